"""Every config in conf/ composes, resolves, and documents each of its fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bots_cli.config import config_dir

CONF = config_dir()
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))
GROUP_OPTIONS = sorted(
    (p.parent.relative_to(CONF).as_posix(), p.stem) for p in CONF.glob("*/**/*.yaml")
)


def groups_used_by(primary: str) -> set[str]:
    """Config groups a primary config's defaults list draws from (`group` or `group@package`)."""
    defaults = yaml.safe_load((CONF / f"{primary}.yaml").read_text()).get("defaults", [])
    return {next(iter(d)).split("@")[0] for d in defaults if isinstance(d, dict)}


def compose_resolved(primary: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=primary, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def test_configs_are_shipped_in_the_package() -> None:
    assert (CONF / "simulate.yaml").is_file()
    assert PRIMARY and GROUP_OPTIONS


@pytest.mark.parametrize("primary", PRIMARY)
def test_every_primary_config_composes(primary: str) -> None:
    cfg = compose_resolved(primary, [])
    assert "lambda" in cfg and "seed" in cfg


CASES = [(p, g, o) for p in PRIMARY for g, o in GROUP_OPTIONS
         if g in groups_used_by(p) and g != "experiment"]  # experiments: test_experiments.py


@pytest.mark.parametrize(("primary", "group", "option"), CASES)
def test_every_group_option_composes(primary: str, group: str, option: str) -> None:
    cfg = compose_resolved(primary, [f"{group}={option}"])
    assert cfg[group]["name"] == option


def test_every_group_option_is_used_by_some_command() -> None:
    used = {g for p in PRIMARY for g in groups_used_by(p)}
    top = {g for g, _ in GROUP_OPTIONS if "/" not in g}  # selector/success: used by selectors
    assert top <= used


def test_root_lambda_feeds_every_selector_that_forgets_freely() -> None:
    cfg = compose_resolved("simulate", ["lambda=0.37"])
    assert cfg["selector"]["lam"] == 0.37
    assert cfg["compare"]["mopps"]["lam"] == 0.37
    assert cfg["compare"]["implicit_only"]["lam"] == 1.0  # fixed by definition


KEY = re.compile(r"^\s*(- )?[\w@/.\-]+\s*:\s*(\S.*)?$")


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.name))
def test_every_field_has_a_comment(path: Path) -> None:
    lines = path.read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        m = KEY.match(line)
        if not m or line.strip().startswith("#"):
            continue
        value = (m.group(2) or "").strip()
        is_section = value == "" or value.startswith("#")
        if line.strip() == "defaults:" or (is_section and not m.group(1)):
            continue  # section headers group commented fields
        if "#" not in line and not (i > 0 and lines[i - 1].strip().startswith("#")):
            missing.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert not missing, "fields without a one-line comment:\n" + "\n".join(missing)


def test_free_form_sections_are_sections_of_the_configs() -> None:
    """`+key=value` may add keys under these (bots_cli/cli/overrides.py); each must be a real
    section, or the exemption would let typos through somewhere else."""
    from bots_cli.cli.overrides import FREE_FORM

    cfg = compose_resolved("train", ["trainer=trl"])
    for path in FREE_FORM:
        node = cfg
        for key in path.split("."):
            node = node[key]
        assert isinstance(node, dict), path
