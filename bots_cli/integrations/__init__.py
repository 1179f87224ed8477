"""BOTS inside the engines people scale with (DESIGN.md §6): thin adapters, one per engine.

Each adapter gives every process the same selections, feeds the selector each task's
(successes, trials) from the engine's own gathered rewards (`bots_cli.selection.feedback`), keeps
the selector's full state in the engine's checkpoints, and refuses an untested engine version in
one line. Importing `bots_cli.integrations` imports no engine.
"""
