"""Reading finished runs: the `report` command (`report.py`), what it shares with `simulate`
(`comparison.py`: cost axes, the noise test, plots), what a selector chose (`chosen.py`,
`chosen_plots.py`) and the `inspect` command (`inspect.py`)."""
