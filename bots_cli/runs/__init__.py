"""The run directory that `bots train` writes and every other command reads: its records
(`records.py`: metrics.jsonl, selections.parquet), its checkpoints (`checkpoints.py`) and how runs
are found and grouped (`groups.py`)."""
