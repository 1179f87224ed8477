"""Evaluation: scoring a model on a task set (`scoring.py`: avg@k, pass@k, per level, resumable
chunks) and the `bots evaluate` command (`command.py`: checkpoints of a run, or a model)."""
