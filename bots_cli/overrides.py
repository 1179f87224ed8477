"""Checking a command's overrides before Hydra runs it: each bad one becomes one `UserError` line.

Hydra reports a wrong group option, an unknown key or an unparsable override in several lines
with advice about its own flags, and it accepts `+section.typo=1` silently. Here the overrides are
composed once with Hydra's own config loader (the same search path as `bots <command>`), so:

- `selector=bogus`: the group's options, and the closest one;
- `train.bogus=1`, `selecter=bots`: the closest key (difflib), and where to see them all;
- `+train.bogus=1`: refused too. The command's schema is its config composed without the `+key`
  overrides; a key the `+` overrides add to it is refused, except under `FREE_FORM` sections,
  which pass their keys on as they are;
- `logger=none` for a command without that group: the groups the command has.

With `-m`, every value of every sweep is composed once (the others at their first value), so a
bad value anywhere in a sweep is refused before its first job starts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError

# Sections whose keys are passed on as they are (documented in their config files): `+` may add
# keys there. trainer.trl.args: any GRPOConfig field; domain.columns: extra task-table columns.
FREE_FORM = ("trainer.trl.args", "domain.columns")
_QUOTED = re.compile(r"'([^']*)'")


def _loader(conf_dir: Path, extra_dir: Path | None) -> Any:
    """Hydra's config loader over `conf_dir` (and `--config-dir` first), as `hydra.main` builds
    it."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    search_path = create_config_search_path(str(conf_dir))
    if extra_dir is not None:
        search_path.prepend(provider="command-line", path=f"file://{extra_dir}")
    return ConfigLoaderImpl(config_search_path=search_path)


def _parse(overrides: list[str], loader: Any = None) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create(config_loader=loader)  # glob() sweeps list config groups
    out = []
    for line in overrides:
        try:
            out += parser.parse_overrides([line])
        except OverrideParseException as err:
            hint = "; write key=value" if "=" not in line else ""
            raise UserError(f"cannot read the override {line!r}: {_first_line(err)}{hint}") \
                from None
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _variants(parsed: list[Any]) -> list[list[str]]:
    """The job overrides to compose: the first value of every sweep, then each other value of
    each sweep once (a sweep's values are checked without composing every combination)."""
    fixed = [o.input_line for o in parsed]
    sweeps = [(i, o) for i, o in enumerate(parsed) if o.is_sweep_override()]
    if not sweeps:
        return [fixed]
    values = {}
    for i, o in sweeps:
        if not o.is_discrete_sweep():
            fixed[i] = ""  # interval sweeps are for optimizer sweepers; they choose the values
            continue
        key = o.get_key_element()
        values[i] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        if not values[i]:
            raise UserError(f"{o.input_line}: the sweep has no values")
        fixed[i] = values[i][0]
    out = [[x for x in fixed if x]]
    for i, vals in values.items():
        for v in vals[1:]:
            out.append([v if j == i else x for j, x in enumerate(fixed) if x])
    return out


def _compose(loader: Any, name: str, overrides: list[str]) -> Any:
    from hydra.types import RunMode

    return loader.load_configuration(config_name=name, overrides=overrides, run_mode=RunMode.RUN,
                                     from_shell=True)


def _keys(cfg: Any, path: str) -> list[str]:
    """The keys of section `path` ("" = the root) of `cfg`, [] when it is not a section."""
    from omegaconf import DictConfig, OmegaConf

    node = cfg if not path else OmegaConf.select(cfg, path, default=None)
    return [str(k) for k in node.keys() if k != "hydra"] if isinstance(node, DictConfig) else []


def _groups(cfg: Any) -> list[str]:
    """The config groups a composed config was made from (Hydra's own excluded)."""
    choices = cfg.hydra.runtime.choices if cfg is not None else {}
    return sorted(str(g) for g in choices if not str(g).startswith("hydra/") and "@" not in g)


def _unknown_key(command: str, key: str, base: Any) -> str:
    """`<key> is not a setting of bots <command> (did you mean ...?)`."""
    parent, _, leaf = key.rpartition(".")
    candidates = _keys(base, parent)
    close = difflib.get_close_matches(leaf, candidates, n=1, cutoff=0.6)
    if not close and not parent:
        # A section left out (steps=5): the setting of that name in a section (train.steps).
        nested = {f"{p}.{k}": k for p in _keys(base, "") for k in _keys(base, p)}
        leaf_close = difflib.get_close_matches(key, sorted(set(nested.values())), n=1)
        close = [next(f for f, k in nested.items() if k == leaf_close[0])] if leaf_close else []
    if parent and not candidates:
        head = parent.split(".")[0]
        return (f"{key} is not a setting of bots {command}: it has no section {parent!r}"
                + _suggest(difflib.get_close_matches(head, _keys(base, ""), n=1)))
    hint = f"{parent}.{close[0]}" if close and parent else (close[0] if close else None)
    free = [f for f in FREE_FORM if f.rpartition(".")[0] == parent and parent]
    return (f"{key} is not a setting of bots {command}"
            + (f" (did you mean {hint}?)" if hint else "")
            + (f"; other keys go under {free[0]}, passed on as they are" if free else "")
            + f"; `bots {command} --cfg job` prints them all")


def _suggest(close: list[str]) -> str:
    return f" (did you mean {close[0]}?)" if close else ""


def _composition_error(command: str, err: Exception, base: Any) -> str:
    """One line for a Hydra composition error."""
    from hydra.errors import MissingConfigException

    text = str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        options = sorted(err.options or [])
        if group and options:
            return (f"{group}={option}: no such option of {group}"
                    + _suggest(difflib.get_close_matches(option, options, n=1))
                    + f"; options: {', '.join(options)}")
    if text.startswith("Ambiguous value for argument"):
        line = _QUOTED.search(text)
        arg = line.group(1) if line else "the override"
        return (f"{arg}: a comma makes a sweep; add -m to run one job per value, write "
                "key=[a,b] for a list, or quote it for text")
    quoted = _QUOTED.findall(text.splitlines()[0] if text else "")
    if text.startswith("Could not override") and quoted:
        key = quoted[0]
        if "No match in the defaults list" in text:
            groups = _groups(base)
            return (f"{key} is not a config group of bots {command}"
                    + _suggest(difflib.get_close_matches(key, groups, n=1))
                    + f"; its groups: {', '.join(groups) or 'none'}")
        return _unknown_key(command, key, base)
    if text.startswith("Could not append to config") and quoted:
        key = quoted[0]
        return f"+{key}: {key} is a setting already; set it without the + ({key}=...)"
    if text.startswith("Could not delete from config") and quoted:
        return _unknown_key(command, quoted[0], base)
    return _first_line(err) + (f" ({err.__cause__})" if err.__cause__ else "")


def _added(full: Any, schema: Any, prefix: str = "") -> Iterator[str]:
    """Keys in `full` that `schema` lacks (outside FREE_FORM sections), dotted."""
    from omegaconf import DictConfig

    for key in full.keys():
        path = f"{prefix}{key}"
        if path in FREE_FORM or path == "hydra":
            continue
        if key not in schema:
            yield path
            continue
        a, b = full._get_node(key), schema._get_node(key)
        if isinstance(a, DictConfig) and isinstance(b, DictConfig) and not a._is_none() \
                and not b._is_none():
            yield from _added(a, b, path + ".")


def _check_added_keys(command: str, loader: Any, name: str, overrides: list[str],
                      parsed: list[Any], full: Any) -> None:
    """Refuse `+key=value` overrides that add a key the command's schema lacks."""
    adding = [o for o in parsed if (o.is_add() or o.is_force_add())
              and not loader.repository.group_exists(o.key_or_group)]
    if not adding:
        return
    dropped = {o.input_line for o in adding}
    schema = _compose(loader, name, [o for o in overrides if o not in dropped])
    for key in _added(full, schema):
        line = next((o.input_line for o in adding if key == o.key_or_group
                     or key.startswith(o.key_or_group + ".")
                     or o.key_or_group.startswith(key + ".")), f"+{key}")
        raise UserError(f"{line}: {_unknown_key(command, key, schema)}")


def check_overrides(command: str, name: str, overrides: list[str], *, conf_dir: Path,
                    multirun: bool = False, extra_dir: Path | None = None) -> Any:
    """Compose `<conf_dir>/<name>.yaml` with `overrides` (each sweep value with -m); the
    composed config of the first job (Hydra's node included), or one `UserError` line."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    loader = _loader(conf_dir, extra_dir)
    job = f"hydra.job.name={command}"
    parsed = _parse(overrides, loader)
    try:
        variants = _variants(parsed) if multirun else [[o.input_line for o in parsed]]
    except HydraException as err:
        raise UserError(f"cannot expand the sweep: {_first_line(err)}") from None
    first = None
    for variant in variants:
        try:
            cfg = _compose(loader, name, [*variant, job])
        except (HydraException, OmegaConfBaseException) as err:
            try:
                base = _compose(loader, name, [job])
            except (HydraException, OmegaConfBaseException):
                base = None
            raise UserError(_composition_error(command, err, base)) from None
        try:
            _check_added_keys(command, loader, name, [*variant, job], _parse(variant), cfg)
        except (HydraException, OmegaConfBaseException):
            pass  # the schema does not compose without the `+` keys: Hydra decides
        first = cfg if first is None else first
    sweeper = OmegaConf.select(first, "hydra.sweeper._target_", default="") if first else ""
    ranged = [o.input_line for o in parsed if o.is_sweep_override() and not o.is_discrete_sweep()]
    if multirun and ranged and str(sweeper).endswith(".BasicSweeper"):
        raise UserError(f"{ranged[0]}: Hydra's basic sweeper runs lists of values only; an "
                        "interval needs an optimizing sweeper (hydra/sweeper=optuna, installed "
                        "as hydra-optuna-sweeper)")
    return first


def resolved_dir(cfg: Any, key: str) -> str | None:
    """`hydra.run.dir` (or `hydra.sweep.dir`) of a composed config, resolved now; None when it
    cannot be resolved outside a Hydra job (Hydra then makes it itself)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if cfg is None:
        return None
    setup_globals()  # Hydra's resolvers (${now:...}), as hydra.main registers them
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    try:
        hydra_config.set_config(cfg)
        value = OmegaConf.select(cfg, key, default=None)
    except (OmegaConfBaseException, ValueError):
        return None
    finally:
        hydra_config.cfg = saved
    return None if value is None else str(value)


def file_logging(cfg: Any) -> bool:
    """Whether the job log of a composed config is Hydra's default plain log file."""
    from omegaconf import OmegaConf

    return cfg is not None and OmegaConf.select(
        cfg, "hydra.job_logging.handlers.file.class", default=None) == "logging.FileHandler"
