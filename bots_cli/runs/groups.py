"""What tells training runs apart: their selector and the settings that differ between them.

`bots report` and `bots inspect` group the runs they are given the same way: by the selector's
config choice (`selector=...`), then by every compared setting (`COMPARED`, less `IGNORED`) whose
value differs among that selector's runs; seeds are what a group averages over. A group's label
is the selector and those settings, without their section (`bots dynamic_sampling.enabled=True`,
`bots lam=0.3`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Config keys that never tell runs apart: seeds (averaged over), bookkeeping, where files live.
IGNORED = ("lambda", "resume", "logger", "train.live", "train.log_every",
           "train.checkpoint_every", "train.keep_last", "train.profiles_dir",
           "train.eval_samples")
COMPARED = ("selector.", "train.", "trainer.name", "model.name", "domain.name", "refs.name",
            "engine.name", "sampling.temperature", "sampling.top_p", "sampling.max_new_tokens")


def run_directories(given: list[str], command: str) -> list[tuple[str, list[Path]]]:
    """Each directory as given, with the directories at or under it that hold a config.yaml
    (Hydra's .hydra/ aside): the runs `bots <command>` may read. A run is listed once however
    it is reached (a sweep and one of its jobs, a directory given twice, a symlink): under the
    first directory that reaches it; a directory whose runs were all listed already is left
    out. One line for no directory or a missing one."""
    from bots_cli.errors import UserError

    if not given:
        raise UserError(f"no runs given: bots {command} <run or multirun directory> ...")
    out = []
    seen: set[Path] = set()
    for name in given:
        root = Path(name).expanduser()
        if not root.is_dir():
            raise UserError(f"{name}: no such directory")
        found = sorted({p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra"})
        fresh = [d for d in found if d.resolve() not in seen]
        seen.update(d.resolve() for d in found)
        if found and not fresh:
            continue  # every run under it was reached already: each counts once
        out.append((name, fresh))
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become tuples (comparable, hashable)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tuple(tree) if isinstance(tree, list) else tree}


def compared_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run config's settings that can tell runs apart, flattened."""
    return {k: v for k, v in flatten(cfg).items()
            if k.startswith(COMPARED) and not k.endswith("seed")
            and not any(k == i or k.startswith(i + ".") for i in IGNORED)}


def selector_label(path: Path, cfg: dict[str, Any]) -> str:
    """The selector's config-group choice (`selector=my_bots`, from the run's .hydra/hydra.yaml),
    or its `name` when the run was not made from a differently named option."""
    import yaml

    name = str(cfg["selector"]["name"])
    try:
        saved = yaml.safe_load((path / ".hydra" / "hydra.yaml").read_text())
        choice = saved["hydra"]["runtime"]["choices"].get("selector")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return name
    return str(choice) if choice else name


def saved_overrides(path: Path) -> tuple[str, ...] | None:
    """The overrides the run was started with (Hydra's .hydra/overrides.yaml), if saved."""
    import yaml

    try:
        saved = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return tuple(str(o) for o in saved) if isinstance(saved, list) else None


def group_labels(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Each run's group label, for runs given as (selector label, compared settings)."""
    varying: dict[str, list[str]] = {}
    for selector in {s for s, _ in runs}:
        members = [settings for s, settings in runs if s == selector]
        keys = sorted({k for m in members for k in m})
        varying[selector] = [k for k in keys if len({repr(m.get(k)) for m in members}) > 1]
    return [" ".join([selector, *(f"{short(k)}={settings.get(k)}" for k in varying[selector])])
            for selector, settings in runs]


def short(key: str) -> str:
    """A setting as a group label names it: `selector.lam` -> `lam`,
    `train.dynamic_sampling.enabled` -> `dynamic_sampling.enabled`."""
    return key.removeprefix("selector.").removeprefix("train.")


def shipped_defaults(selector: str) -> dict[str, Any]:
    """The shipped values of the compared settings: conf/train.yaml's `train` section and, when
    the selector is a shipped option, conf/selector/<selector>.yaml (flattened, as
    `compared_settings` keys)."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    conf = config_dir()
    tree: dict[str, Any] = {"train": OmegaConf.to_container(
        OmegaConf.load(conf / "train.yaml").train, resolve=False)}
    option = conf / "selector" / f"{selector}.yaml"
    if option.is_file():
        selector_tree = OmegaConf.to_container(OmegaConf.load(option), resolve=False)
        assert isinstance(selector_tree, dict)
        tree["selector"] = {k: v for k, v in selector_tree.items() if k != "defaults"}
    return flatten(tree)


def train_run_dir(key: str, value: Any) -> Path:
    """The training run `<key>=<dir>` names, or a one-line error when it is not one."""
    from bots_cli.errors import UserError

    run_dir = Path(str(value)).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{key}={value}: no such run directory")
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise UserError(f"{key}={value}: no config.yaml there; is it a `bots train` run "
                        "directory?")
    import yaml

    try:
        cfg = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{key}={value}: cannot read {saved} ({type(err).__name__})") from None
    if not isinstance(cfg, dict) or not {"train", "selector"} <= set(cfg):
        raise UserError(f"{key}={value}: {saved} is not the config of a `bots train` run")
    return run_dir
