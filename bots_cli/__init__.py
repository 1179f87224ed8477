"""bots: Bayesian Online Task Selection (BOTS) for reinforcement finetuning of LLMs.

The package is a library with thin command-line entry points (`bots_cli.cli.app`): each command is a
plain function of its Hydra config, importable and testable without the CLI.
"""

__version__ = "0.1.0"
