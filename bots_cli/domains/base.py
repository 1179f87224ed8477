"""What every domain shares: its config, where its data lives, loading, generating splits.

A domain subclasses `Domain` and supplies three things: `generate_task` (one seeded task at a
difficulty level), `score` (a completion against a task: reward in [0, 1] plus a small dict of
details) and optionally `render_prompt` (the instruction around the task's prompt). The config of
a domain is `conf/domain/<name>.yaml`; `Domain(None)` reads that file, so the YAML stays the one
place that holds the defaults.

Data paths in the config are relative to `data_dir`; `data_dir: null` means the `data/` folder of
the source checkout bots runs from (the repo root, next to `bots_cli/`), or `./data` in the
working directory when bots is installed from a wheel (there is no checkout then).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bots_cli.checks import check_int
from bots_cli.errors import InvalidValue, UserError

SPLITS = ("train", "eval")
_MAX_DRAWS = 200  # fresh draws per task before a level counts as exhausted (all tasks seen)


@dataclass
class Score:
    """A completion's reward in [0, 1] and what led to it (for logs and debugging)."""

    reward: float
    details: dict[str, Any] = field(default_factory=dict)


def as_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict from a DictConfig, a mapping or None."""
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            out = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(out, dict)
            return {str(k): v for k, v in out.items()}
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


def default_config(name: str) -> dict[str, Any]:
    """The shipped `conf/domain/<name>.yaml` as a plain dict."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    return as_dict(OmegaConf.load(config_dir() / "domain" / f"{name}.yaml"))


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, nested mappings merged key by key (other values replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (merge_config(out[k], v) if isinstance(v, Mapping)
                  and isinstance(out.get(k), Mapping) else v)
    return out


def _keep_levels(df: Any, levels: Sequence[int], split: str, key: str) -> Any:
    """The rows of `df` whose level is in `levels`; every level asked for must have a task."""
    if "level" not in df.columns:
        raise UserError(f"{key} needs a `level` column in the task table; map one in "
                        f"domain.columns.level or set {key}=null")
    present = sorted({int(v) for v in df["level"].dropna()})
    missing = [int(v) for v in levels if int(v) not in present]
    if missing:
        raise UserError(f"{key}: no task of the {split} split has level "
                        f"{', '.join(map(str, missing))} (its levels: "
                        f"{', '.join(map(str, present)) or 'none'})")
    return df[df["level"].isin([int(v) for v in levels])].reset_index(drop=True)


def repo_data_dir() -> Path:
    """`data/` of the source checkout if there is one, else `./data`."""
    checkout = Path(__file__).resolve().parents[2] / "data"
    return checkout if checkout.is_dir() else Path.cwd() / "data"


def task_field(task: Any, key: str, default: Any = None) -> Any:
    """`task[key]` for a dict, a pandas row or a namedtuple."""
    if isinstance(task, Mapping):
        return task.get(key, default)
    try:
        return task[key]  # a pandas Series (a row of the task table)
    except (KeyError, IndexError, TypeError):
        return getattr(task, key, default)  # a namedtuple from DataFrame.itertuples()


class Domain:
    """Base class of the domains: data loading and generation, prompts, rewards."""

    name: ClassVar[str]
    levels: ClassVar[tuple[int, ...]]  # the generator's difficulty levels
    instruction: ClassVar[str] = ""  # appended to text prompts by `render_prompt`

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = self.config(cfg)
        self.reward_cfg = dict(self.cfg["reward"])

    def config(self, cfg: Any = None) -> dict[str, Any]:
        """`cfg` over the shipped conf/domain/<name>.yaml: the YAML holds every default, so a
        partial config (from Python) reads the same values a composed Hydra config carries."""
        return merge_config(default_config(self.name), as_dict(cfg))

    # ---- data -----------------------------------------------------------------------------
    def data_dir(self, cfg: Mapping[str, Any] | None = None) -> Path:
        cfg = self.cfg if cfg is None else cfg
        root = cfg["data_dir"]
        return Path(root).expanduser() if root else repo_data_dir()

    def data_path(self, split: str = "train", cfg: Mapping[str, Any] | None = None) -> Path:
        """Where `split` lives: `data.<split>` resolved against `data_dir` (absolute: as is)."""
        cfg = self.cfg if cfg is None else cfg
        data = cfg["data"] or {}
        if split not in data or not data[split]:
            raise UserError(f"domain.data.{split} is not set for domain {self.name}; "
                            f"known splits: {', '.join(data) or 'none'}")
        path = Path(str(data[split])).expanduser()
        return path if path.is_absolute() else self.data_dir(cfg) / path

    def load(self, cfg: Any = None, split: str = "train", *, levels: Sequence[int] | None = None,
             max_tasks: int | None = None, key: str = "max_tasks",
             levels_key: str = "levels") -> Any:
        """The `split` task table of this domain as a validated DataFrame (DESIGN.md §4).

        `levels` keeps the tasks of those levels (an error names the levels the table has when
        none matches one of them); then `max_tasks` keeps the first that many. `key` and
        `levels_key` are the config keys they came from, for the error messages.
        """
        from bots_cli.domains.table import load_task_table

        conf = self.cfg if cfg is None else self.config(cfg)
        path = self.data_path(split, conf)
        df = self._loaded(load_task_table(path, conf["columns"], self.name), conf, path)
        for i, answer in enumerate(df["answer"]):
            problem = self.check_answer(answer)
            if problem:
                raise UserError(f"{path}: row {i + 1} has an answer {self.name} cannot score: "
                                f"{problem}")
        if levels is not None:
            df = _keep_levels(df, levels, split, levels_key)
        if max_tasks is not None:
            df = df.iloc[: check_int(key, max_tasks, lo=1)].reset_index(drop=True)
        return df

    def _loaded(self, df: Any, conf: Mapping[str, Any], path: Path) -> Any:
        """A domain's own step after loading a table (math: answers from `\\boxed{}`)."""
        return df

    def check_answer(self, answer: str) -> str | None:
        """Why `answer` is unusable as this domain's ground truth, or None if it is fine."""
        return None

    # ---- generation -----------------------------------------------------------------------
    def generate_task(self, rng: random.Random, level: int) -> dict[str, Any]:
        """One task at `level`: at least `prompt` and `answer` (more columns allowed)."""
        raise NotImplementedError

    def generate(self, n: int, seed: int, levels: Sequence[int] | None = None,
                 split: str = "train", seen: set[str] | None = None) -> Any:
        """`n` distinct tasks, cycling through `levels`; deterministic given (seed, split).

        `seen` holds prompts already used (another split's): they are never drawn again, so eval
        tasks never leak into training. A level whose tasks are all used is skipped.
        """
        import pandas as pd

        levels = self._check_levels(levels)
        rng = random.Random(f"{self.name}/{seed}/{split}")
        seen = set() if seen is None else seen
        rows: list[dict[str, Any]] = []
        live = list(levels)
        while len(rows) < n and live:
            level = live[len(rows) % len(live)]
            for _ in range(_MAX_DRAWS):
                task = self.generate_task(rng, level)
                key = json_key(task["prompt"])
                if key not in seen:
                    seen.add(key)
                    extra = {k: v for k, v in task.items() if k not in ("prompt", "answer")}
                    rows.append({"task_id": f"{self.name}-{split}-{len(rows):05d}",
                                 "prompt": task["prompt"], "answer": task["answer"],
                                 "domain": self.name, "level": level, **extra})
                    break
            else:
                live.remove(level)
        if len(rows) < n:
            raise InvalidValue(f"only {len(rows)} distinct {self.name} tasks exist at levels "
                               f"{list(levels)}, {n} were asked for; lower generate.n_{split} "
                               f"or add levels")
        return pd.DataFrame(rows)

    def make_splits(self, gen_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The eval and train splits of `generate:` in the config, disjoint by prompt."""
        g = dict(self.cfg["generate"]) if gen_cfg is None else dict(gen_cfg)
        seed = check_int("domain.generate.seed", g["seed"], lo=0)
        seen: set[str] = set()
        out = {}
        for split in ("eval", "train"):  # eval first: its tasks are reserved
            n = check_int(f"domain.generate.n_{split}", g.get(f"n_{split}"), lo=1)
            out[split] = self.generate(n, seed, g.get("levels"), split=split, seen=seen)
        return {s: out[s] for s in SPLITS}

    def _check_levels(self, levels: Sequence[int] | None) -> tuple[int, ...]:
        if levels is None:
            return self.levels
        out = tuple(int(x) for x in levels)
        bad = [x for x in out if x not in self.levels]
        if not out or bad:
            raise InvalidValue(f"domain.generate.levels for {self.name} must be a non-empty list "
                               f"drawn from {list(self.levels)}, got {list(levels)}")
        return out

    # ---- prompts and rewards --------------------------------------------------------------
    def render_prompt(self, task: Any) -> str:
        """The user-turn text for `task` (a chat-message prompt is joined, not re-instructed)."""
        prompt = task_field(task, "prompt")
        if isinstance(prompt, str):
            return prompt + self.instruction
        if hasattr(prompt, "tolist"):
            prompt = prompt.tolist()
        return "\n\n".join(str(m["content"]) for m in prompt)

    def render_messages(self, task: Any) -> list[dict[str, str]]:
        """Chat messages for `task`, for engines that apply the model's chat template."""
        prompt = task_field(task, "prompt")
        if isinstance(prompt, str):
            return [{"role": "user", "content": self.render_prompt(task)}]
        if hasattr(prompt, "tolist"):
            prompt = prompt.tolist()
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]

    def score(self, completion: str, task: Any) -> Score:
        raise NotImplementedError

    def reward(self, completion: str, task: Any) -> float:
        """The reward of `completion` for `task`, in [0, 1]; 1.0 = fully correct."""
        return self.score(completion, task).reward

    @property
    def reward_timeouts(self) -> int:
        """How many scorings so far ran out of verifier time and were scored 0 (math-verify's
        timeout); 0 for domains whose verifier cannot time out. Logged as
        `train/reward_timeouts`."""
        return 0

    def rewards(self, completions: Sequence[str], tasks: Sequence[Any]) -> list[float]:
        """Rewards of many (completion, task) pairs; domains with slow verifiers parallelise."""
        if len(completions) != len(tasks):
            raise ValueError(f"{len(completions)} completions for {len(tasks)} tasks")
        return [self.reward(c, t) for c, t in zip(completions, tasks, strict=True)]


def json_key(prompt: Any) -> str:
    import json

    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
