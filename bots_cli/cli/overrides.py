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

With `-m`, every job of the sweep is composed (every combination of the swept values, those of
an experiment's `hydra.sweeper.params` included), so a bad value anywhere in a sweep is refused
before its first job starts; `compose_overrides` hands the jobs' configs on for the command's own
checks.

`~key` deletes only what may be absent: a key of a `FREE_FORM` section or the optional
`experiment` group; deleting a setting a command reads is one line, not a KeyError later.

A list setting (its default is a list, or it is in `NULL_LISTS`) given one bare value is a list
of that one value: `sampling.stop=STOP` is ['STOP'], never the characters S, T, O, P
(`as_lists`, applied to every job's config before the command reads it).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError

# Sections whose keys are passed on as they are (documented in their config files): `+` may add
# keys there. trainer.trl.args: any GRPOConfig field; domain.columns: extra task-table columns.
FREE_FORM = ("trainer.trl.args", "domain.columns")
# Settings that hold a list although their default is null (every setting whose default is a
# list is one too), as dotted paths or path endings: `success.reward_range` is
# `selector.success.reward_range` and `compare.<name>.success.reward_range` alike.
NULL_LISTS = ("train.levels", "evaluate.steps", "evaluate.domains", "success.reward_range")
# Config groups that may be left out with `~group` (their default is none).
OPTIONAL_GROUPS = ("experiment",)
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
            raise UserError(f"cannot read the override {line!r}: {_first_line(err)}"
                            f"{_parse_hint(line)}") from None
    return out


def _parse_hint(line: str) -> str:
    """What to do about an override Hydra's grammar cannot read: key=value, or quotes around a
    value holding characters the grammar reserves (=, brackets, quotes...) or non-ASCII text."""
    key, eq, value = line.partition("=")
    if not eq:
        return "; write key=value"
    if value[:1] in ("'", '"') or (value.isascii() and not set(value) & set("=()[]{}'\"\\:,$")):
        return ""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return (f"; quote the value: \"{key}='{escaped}'\" (single quotes for Hydra inside double "
            "quotes for the shell)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _jobs(parsed: list[Any]) -> list[list[str]]:
    """The overrides of every job, as Hydra's basic sweeper makes them: every combination of the
    swept values (interval sweeps are for optimizing sweepers, which choose the values)."""
    choices: list[list[str]] = []
    for o in parsed:
        if not o.is_sweep_override():
            choices.append([o.input_line])
        elif o.is_discrete_sweep():
            key = o.get_key_element()
            values = [f"{key}={v}" for v in o.sweep_string_iterator()]
            if not values:
                raise UserError(f"{o.input_line}: the sweep has no values")
            choices.append(values)
    return [list(job) for job in itertools.product(*choices)]


def _config_sweeps(cfg: Any, parsed: list[Any], loader: Any) -> list[Any]:
    """The sweeps an experiment file declares (`hydra.sweeper.params`) that the command line
    does not override, parsed, as Hydra's basic sweeper adds them."""
    from omegaconf import OmegaConf

    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) if cfg else None
    if not params:
        return []
    given = {o.key_or_group for o in parsed}
    declared = OmegaConf.to_container(params)
    assert isinstance(declared, dict)
    lines = [f"{k!s}={v}" for k, v in declared.items() if str(k) not in given]
    return _parse(lines, loader)


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


@dataclass
class Composition:
    """What the overrides compose to: the first job's config (Hydra's node included), with -m
    every job's config and overrides, and the list settings of the command (`as_lists`)."""

    first: Any
    jobs: list[tuple[list[str], Any]] = field(default_factory=list)
    lists: set[str] = field(default_factory=set)


def check_overrides(command: str, name: str, overrides: list[str], *, conf_dir: Path,
                    multirun: bool = False, extra_dir: Path | None = None) -> Any:
    """The composed config of the first job (see `compose_overrides`), or one `UserError`."""
    return compose_overrides(command, name, overrides, conf_dir=conf_dir, multirun=multirun,
                             extra_dir=extra_dir).first


def compose_overrides(command: str, name: str, overrides: list[str], *, conf_dir: Path,
                      multirun: bool = False, extra_dir: Path | None = None) -> Composition:
    """Compose `<conf_dir>/<name>.yaml` with `overrides` (every job of a sweep with -m), or one
    `UserError` line."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    loader = _loader(conf_dir, extra_dir)
    job = f"hydra.job.name={command}"
    parsed = _parse(overrides, loader)
    _check_deletions(command, parsed, loader, name, job)

    def compose(variant: list[str]) -> Any:
        try:
            cfg = _compose(loader, name, [*variant, job])
        except (HydraException, OmegaConfBaseException) as err:
            groups = [o for o in variant if _is_group(loader, o)]
            try:  # the schema of this job's groups (selector=uniform has no selector.rho)
                base = _compose(loader, name, [*groups, job])
            except (HydraException, OmegaConfBaseException):
                try:
                    base = _compose(loader, name, [job])
                except (HydraException, OmegaConfBaseException):
                    base = None
            where = f" (with {' '.join(groups)})" if groups and multirun else ""
            raise UserError(_composition_error(command, err, base) + where) from None
        try:
            _check_added_keys(command, loader, name, [*variant, job], _parse(variant), cfg)
        except (HydraException, OmegaConfBaseException):
            pass  # the schema does not compose without the `+` keys: Hydra decides
        return cfg

    try:
        jobs = _jobs(parsed) if multirun else [[o.input_line for o in parsed]]
        first_variant = jobs[0]
        first = compose(first_variant)
        sweeper = str(OmegaConf.select(first, "hydra.sweeper._target_", default=""))
        basic = sweeper.endswith(".BasicSweeper")
        if multirun and basic:
            declared = _config_sweeps(first, parsed, loader)
            if declared:
                jobs = _jobs([*declared, *parsed])
    except HydraException as err:
        raise UserError(f"cannot expand the sweep: {_first_line(err)}") from None
    ranged = [o.input_line for o in parsed if o.is_sweep_override() and not o.is_discrete_sweep()]
    if multirun and ranged and basic:
        raise UserError(f"{ranged[0]}: Hydra's basic sweeper runs lists of values only; an "
                        "interval needs an optimizing sweeper (hydra/sweeper=optuna, installed "
                        "as hydra-optuna-sweeper)")
    out = Composition(first=first)
    groups: dict[tuple[str, ...], None] = {(): None}  # the group choices of the jobs
    for variant in jobs:
        cfg = first if variant == first_variant else compose(variant)
        out.jobs.append((variant, cfg))
        groups[tuple(o for o in variant if _is_group(loader, o))] = None
    for choice in groups:
        try:
            out.lists |= list_settings(_compose(loader, name, [*choice, job]))
        except (HydraException, OmegaConfBaseException):
            pass
    return out


def _is_group(loader: Any, override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return bool(loader.repository.group_exists(key.split("@")[0]))


def _check_deletions(command: str, parsed: list[Any], loader: Any, name: str, job: str) -> None:
    """`~key` may delete only what a command can do without: a key of a free-form section, a
    key added with `+`, or an optional group."""
    added = {o.key_or_group for o in parsed if o.is_add() or o.is_force_add()}
    for o in parsed:
        if not o.is_delete():
            continue
        key = o.key_or_group
        if (key in OPTIONAL_GROUPS or key in added
                or any(key.startswith(f + ".") for f in FREE_FORM)):
            continue
        if loader.repository.group_exists(key):
            raise UserError(f"{o.input_line}: bots {command} needs a {key}; choose another "
                            f"option ({key}=...) instead of deleting it")
        raise UserError(f"{o.input_line}: bots {command} reads {key}; set it ({key}=...) "
                        "instead of deleting it")


def list_settings(cfg: Any) -> set[str]:
    """The dotted paths of a composed config's list settings: those whose value is a list
    (their default, when `cfg` is composed without value overrides) and those of `NULL_LISTS`."""
    from omegaconf import DictConfig, ListConfig

    out: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        for key in node.keys():
            path = f"{prefix}{key}"
            if path == "hydra" or path in FREE_FORM:
                continue
            child = node._get_node(key)
            if isinstance(child, ListConfig) or any(
                    path == n or path.endswith("." + n) for n in NULL_LISTS):
                out.add(path)
            elif isinstance(child, DictConfig) and not child._is_none() \
                    and not child._is_interpolation():
                walk(child, path + ".")

    if cfg is not None:
        walk(cfg, "")
    return out


def as_lists(cfg: Any, paths: set[str]) -> None:
    """Make each list setting of `cfg` given one bare value a list of that value (in place);
    a section given for a list is one `UserError` line."""
    from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

    for path in sorted(paths):
        parent_path, _, key = path.rpartition(".")
        parent = OmegaConf.select(cfg, parent_path, default=None) if parent_path else cfg
        if not isinstance(parent, DictConfig) or key not in parent:
            continue
        node = parent._get_node(key)
        if node is None or isinstance(node, ListConfig) or node._is_none() \
                or node._is_interpolation():
            continue
        if isinstance(node, DictConfig):
            raise UserError(f"{path} is a list, not a section; write {path}=[a,b]")
        with open_dict(parent):
            parent[key] = [node._value()]


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
