"""`bots train trainer=trl`: TRL's GRPOTrainer driven from the same config groups as the native
loop (`backend.py`), writing the same run records (`records.py`). The adapter it drives is the
public `bots_cli.integrations.trl`."""
