"""The command line: the Typer app (`app.py`, one row per command), running a command under Hydra
(`launch.py`: run directories, sweeps, user errors, Ctrl-C) and the overrides checked before Hydra
runs (`overrides.py`)."""
