"""Exceptions that are the user's to fix.

The CLI prints a `UserError` as one line and exits non-zero, with no traceback. Anything else is
a bug in bots and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input (config value, data file, missing artefact)."""


class InvalidValue(UserError, ValueError):
    """A hyperparameter or argument outside its allowed range.

    It is a `ValueError`, as the public selection API promises, and a `UserError`, so the CLI
    reports it as one line when it comes from a config value.
    """
