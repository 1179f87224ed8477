"""Experiment files (conf/experiment/): overrides kept in YAML, applied after everything else."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from bots_cli.config import config_dir

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


def _compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_the_shipped_experiments() -> None:
    assert {"demo", "sample_efficiency"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_composes_and_sweeps_selectors(name: str) -> None:
    cfg = _compose([f"experiment={name}"])
    assert "uniform" in cfg.hydra.sweeper.params.selector.split(",")  # the baseline is in it
    assert cfg.train.live is False


def test_the_demo_experiment_sets_what_make_demo_used_to_pass() -> None:
    cfg = _compose(["experiment=demo"])
    assert (cfg.seed, cfg.train.steps) == (0, 200)
    assert cfg.hydra.sweeper.params.selector == "bots,uniform"
    # Command-line overrides still win over the experiment's values.
    assert _compose(["experiment=demo", "train.steps=7"]).train.steps == 7


def test_no_experiment_is_the_default() -> None:
    cfg = _compose([])
    assert cfg.train.steps == 400 and not cfg.hydra.sweeper.get("params")

