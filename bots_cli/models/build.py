"""Building the tiny world's checkpoints: `build_tiny` and `ensure_tiny`.

One warm-start run from a seeded random init yields two checkpoints: `weak` after `weak_steps`
(the policy's starting point and the weak reference) and `strong` after `strong_steps` in total
(the same run, trained further: the strong reference). Both are saved under
`<model.build.dir>/<model.build.name>/` with a manifest, and reused while the manifest matches.

The build depends on its recipe only: the `model.build` section, the `generate:` settings of the
warm-start domain's own conf/domain/<domain>.yaml (the recipe of the shipped splits, whose prompts
the warm start holds out) and `FORMAT`. The manifest is keyed on these, so checking the cache
generates no task, and a command's own domain data never rebuilds the shared model. The
`bots build-tiny` command is in `bots_cli.models.build_command`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bots_cli.atomic import atomic_dir
from bots_cli.checks import check_choice, check_int, check_range
from bots_cli.errors import UserError
from bots_cli.models import checkpoints
from bots_cli.models.tiny import (
    SCHEDULES,
    PairBatches,
    TinyArch,
    WarmStart,
    build_tokenizer,
    count_parameters,
    init_model,
    make_optimizer,
    save_tokenizer,
    warm_start,
)

CHECKPOINTS = ("weak", "strong")
LOSS_WINDOW = 50  # steps averaged for the reported final loss
# Version of what a recipe trains on: bump it when a code change (task generation, rendering,
# the warm start) changes the weights of an unchanged recipe, so old builds are not reused.
FORMAT = 2


@dataclass(frozen=True)
class TinySettings:
    """The `model.build` section of conf/model/tiny.yaml, validated."""

    build_dir: Path
    domain: str
    fresh_data: bool  # warm-start on newly generated tasks rather than the train split
    level_weights: tuple[float, ...] | None  # fresh data: relative share of each level's tasks
    seed: int
    weak_steps: int
    strong_steps: int
    arch: TinyArch
    warm: WarmStart

    def recipe(self) -> dict[str, Any]:
        """Every setting the weights depend on (not where they are saved)."""
        return {
            "domain": self.domain, "data": "fresh" if self.fresh_data else "train",
            "level_weights": None if self.level_weights is None else list(self.level_weights),
            "seed": self.seed, "weak_steps": self.weak_steps, "strong_steps": self.strong_steps,
            "arch": self.arch.__dict__, "warm_start": self.warm.to_dict(),
        }

    @classmethod
    def from_config(cls, model_cfg: Any) -> TinySettings:
        """The settings of a model config's `build` section. A recipe other than the shipped
        one never builds in the shipped build's directory (`<dir>/<name>`, tracked in git): it
        builds beside it, in `<dir>/<name>-<recipe hash>`, so the shipped checkpoints (and
        their profiles) stay as they are whatever a command is given."""
        settings = cls._parse(model_cfg)
        shipped = _shipped_parse()
        if settings.build_dir == shipped.build_dir and settings.recipe() != shipped.recipe():
            return replace(settings, build_dir=settings.build_dir.with_name(
                f"{settings.build_dir.name}-{recipe_hash(settings.recipe())}"))
        return settings

    @classmethod
    def _parse(cls, model_cfg: Any) -> TinySettings:
        b = model_cfg.get("build") if model_cfg is not None else None
        if b is None:
            raise UserError(f"model={model_cfg.get('name')} has no `build` section: only the tiny "
                            "model is built locally (use model=tiny)")
        weak = check_int("model.build.weak_steps", b["weak_steps"], lo=1)
        strong = check_int("model.build.strong_steps", b["strong_steps"], lo=1)
        if strong <= weak:
            raise UserError(f"model.build.strong_steps ({strong}) must exceed weak_steps ({weak}):"
                            " the strong checkpoint continues the weak one's run")
        heads = check_int("model.build.num_heads", b["num_heads"], lo=1)
        hidden = check_int("model.build.hidden_size", b["hidden_size"], lo=heads)
        if hidden % heads:
            raise UserError(f"model.build.hidden_size ({hidden}) must be a multiple of num_heads "
                            f"({heads})")
        return cls(
            build_dir=_project_path(str(b["dir"])) / str(b["name"]),
            domain=str(b["domain"]),
            fresh_data=check_choice("model.build.data", b["data"], ("fresh", "train")) == "fresh",
            level_weights=(None if b["level_weights"] is None
                           else tuple(float(w) for w in b["level_weights"])),
            seed=check_int("model.build.seed", b["seed"], lo=0),
            weak_steps=weak,
            strong_steps=strong,
            arch=TinyArch(
                hidden_size=hidden, num_layers=check_int("model.build.num_layers",
                                                         b["num_layers"], lo=1),
                num_heads=heads,
                intermediate_size=check_int("model.build.intermediate_size",
                                            b["intermediate_size"], lo=1),
                max_positions=check_int("model.build.max_positions", b["max_positions"], lo=8),
            ),
            warm=WarmStart(
                batch_size=check_int("model.build.batch_size", b["batch_size"], lo=1),
                lr=check_range("model.build.lr", b["lr"], 0.0, 1.0, lo_open=True),
                warmup_steps=check_int("model.build.warmup_steps", b["warmup_steps"], lo=0),
                weight_decay=check_range("model.build.weight_decay", b["weight_decay"], 0.0),
                schedule=check_choice("model.build.lr_schedule", b["lr_schedule"], SCHEDULES),
            ),
        )


def recipe_hash(recipe: dict[str, Any]) -> str:
    """Eight hex digits naming a recipe (its settings, as JSON with sorted keys)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]


def _shipped_parse() -> TinySettings:
    """conf/model/tiny.yaml's `build` section as it is, where the shipped build lives."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    return TinySettings._parse(OmegaConf.load(config_dir() / "model" / "tiny.yaml"))


def shipped_recipe() -> TinySettings:
    """The shipped tiny world's recipe: conf/model/tiny.yaml's `build` section, validated (the
    one place its values live; TinyArch and WarmStart carry no defaults of their own)."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    return TinySettings.from_config(OmegaConf.load(config_dir() / "model" / "tiny.yaml"))


def _project_path(path: str) -> Path:
    """A relative `model.build.dir` lives in the project: next to `data/` of the checkout bots
    runs from (or of the working directory when installed from a wheel), wherever bots is run."""
    from bots_cli.domains.base import repo_data_dir

    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_data_dir().parent / p


@dataclass
class TinyBuild:
    """A finished build: where its checkpoints are and what the warm start reached."""

    build_dir: Path
    reused: bool  # True when a matching cached build was found and nothing was trained
    results: dict[str, Any] = field(default_factory=dict)  # per checkpoint: steps, final loss

    def checkpoint(self, name: str) -> Path:
        if name not in CHECKPOINTS:
            raise UserError(f"tiny checkpoint must be one of {', '.join(CHECKPOINTS)}, "
                            f"got {name!r}")
        return self.build_dir / name


def build_tiny(
    pairs: Sequence[tuple[str, str]],
    out_dir: Path | str,
    weak_steps: int,
    strong_steps: int,
    seed: int,
    *,
    arch: TinyArch | None = None,
    warm: WarmStart | None = None,
    force: bool = False,
    progress: bool = False,
) -> TinyBuild:
    """Warm-start a seeded tiny model on `pairs`; save `weak` and `strong` under `out_dir`.

    `pairs` are already rendered `(prompt text, answer text)`; the manifest holds their hash. The
    same arguments always give the same weights, so a build in `out_dir` whose manifest matches
    is returned as is. (`ensure_tiny` builds from a recipe instead, keyed on the recipe.)
    """
    if arch is None or warm is None:  # the shipped recipe's
        shipped = shipped_recipe()
        arch, warm = arch or shipped.arch, warm or shipped.warm
    key = {
        "format": FORMAT, "arch": arch.__dict__, "warm_start": warm.to_dict(), "seed": seed,
        "weak_steps": weak_steps, "strong_steps": strong_steps,
        "data_sha256": checkpoints.hash_pairs(pairs), "n_pairs": len(pairs),
    }
    out = Path(out_dir)
    if not force and checkpoints.matching_build(out, key, CHECKPOINTS):
        return _cached(out)
    return _train_build(pairs, out, key, weak_steps, strong_steps, seed, arch, warm, progress)


def _cached(out: Path) -> TinyBuild:
    manifest = checkpoints.read_manifest(out) or {}
    return TinyBuild(out, reused=True, results=manifest.get("results", {}))


def _train_build(pairs: Sequence[tuple[str, str]], out: Path, key: dict[str, Any],
                 weak_steps: int, strong_steps: int, seed: int, arch: TinyArch,
                 warm: WarmStart, progress: bool) -> TinyBuild:
    """The warm start itself, written into a temporary directory that replaces `out` when whole
    (a killed build leaves nothing behind: see `atomic_dir`)."""
    if strong_steps <= weak_steps:
        raise ValueError(f"strong_steps ({strong_steps}) must exceed weak_steps ({weak_steps})")
    tokenizer = build_tokenizer()
    model = init_model(arch, tokenizer, seed)
    batches = PairBatches(pairs, tokenizer, seed)
    longest = int(batches.lengths.max())
    if longest > arch.max_positions:
        raise UserError(f"the longest prompt + answer + EOS has {longest} tokens, more than the "
                        f"tiny model's max_positions ({arch.max_positions}): raise "
                        "model.build.max_positions")
    optimizer = make_optimizer(model, warm, strong_steps)
    results: dict[str, Any] = {"parameters": count_parameters(model), "pairs": len(pairs)}
    with atomic_dir(out) as tmp, _progress(progress, strong_steps) as on_step:
        done, started = 0, time.perf_counter()
        for name, until in (("weak", weak_steps), ("strong", strong_steps)):
            losses = warm_start(model, batches, until - done, warm, optimizer, on_step=on_step)
            done = until
            tail = losses[-LOSS_WINDOW:]
            results[name] = {
                "steps": until,
                "final_loss": sum(tail) / len(tail) if tail else None,
                "seconds": round(time.perf_counter() - started, 1),
            }
            model.save_pretrained(tmp / name)
            save_tokenizer(tokenizer, tmp / name)
        results["weights_sha256"] = checkpoints.weights_sha256(tmp, CHECKPOINTS)
        checkpoints.write_manifest(tmp, key, results)  # atomic_dir applies the umask
    return TinyBuild(out, reused=False, results=results)


class _progress:
    """A rich progress bar over warm-start steps (or nothing), as a context manager."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("warm start"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[rate]} steps/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        )
        self._bar.__enter__()
        task = self._bar.add_task("warm start", total=self.total, loss=float("nan"), rate="-")
        bar, started = self._bar, time.perf_counter()

        def on_step(step: int, loss: float) -> None:
            done = bar.tasks[0].completed + 1
            rate = f"{done / max(time.perf_counter() - started, 1e-9):.1f}"
            bar.update(task, advance=1, loss=loss, rate=rate)

        return on_step

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def domain_pairs(domain: str, domain_cfg: Any, tokenizer: Any, fresh: int = 0,
                 seed: int = 0, split: str = "train",
                 level_weights: Sequence[float] | None = None) -> list[tuple[str, str]]:
    """`(prompt text, answer)` pairs of a domain, prompts rendered for the model.

    `fresh=0`: the domain's `split`. `fresh=N`: N newly generated tasks (see `fresh_tasks`), none
    of them a train or eval prompt, so the warm start teaches the skill instead of the answers of
    the very tasks the policy is later trained and evaluated on (a warm start that cycles over the
    train split memorises it: high pass rates there, near zero held out).
    Uses the domains API (`bots_cli.domains.load_domain`): the prompt is what the domain renders
    for a task, passed through the model's chat template (none for the tiny model), so the warm
    start sees exactly the text the rollout engines will see.
    """
    try:
        from bots_cli.domains import load_domain
    except ImportError as err:
        if err.name not in ("bots_cli.domains", "bots_cli"):
            raise
        raise UserError(f"the {domain} domain is not available in this installation "
                        "(bots_cli.domains is missing), so the tiny model cannot be "
                        "built") from None
    from bots_cli.models.prompts import render_prompt_for_model

    dom = load_domain(domain)
    if fresh:
        from bots_cli.domains.base import json_key

        held = {json_key(p) for s in ("train", "eval")
                for p in dom.load(domain_cfg, split=s)["prompt"]}
        records = fresh_tasks(dom, fresh, seed, held, level_weights)
    else:
        records = dom.load(domain_cfg, split=split).to_dict("records")
    if not records:
        raise UserError(f"the {domain} task table is empty: nothing to warm-start the tiny "
                        "model on")
    return [(render_prompt_for_model(tokenizer, dom.render_prompt(task)), str(task["answer"]))
            for task in records]


FRESH_DRAWS = 1000  # draws per warm-start task before its level counts as used up by the splits


def fresh_tasks(dom: Any, n: int, seed: int, held: set[str],
                level_weights: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """`n` generated tasks, one per warm-start sample, none of whose prompts is in `held`
    (prompts as `json_key` writes them).

    Each task's level is drawn with probability proportional to `level_weights` (one weight per
    level of the domain, in order; None = equal). Tasks are drawn independently, so a level with
    few distinct prompts repeats them (level 1 of arith has about a thousand): only the train and
    eval prompts are excluded, which is what keeps held-out pass rates honest.
    """
    import random

    from bots_cli.domains.base import json_key

    levels = list(dom.levels)
    weights = [1.0] * len(levels) if level_weights is None else [float(w) for w in level_weights]
    if len(weights) != len(levels) or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(f"model.build.level_weights needs one weight >= 0 per {dom.name} level "
                        f"{levels} (not all 0), got {list(weights)}")
    rng = random.Random(f"{dom.name}/{seed}/warm-start")
    tasks: list[dict[str, Any]] = []
    for level in rng.choices(levels, weights, k=n):
        for _ in range(FRESH_DRAWS):
            task = dom.generate_task(rng, level)
            if json_key(task["prompt"]) not in held:
                tasks.append({**task, "level": level})
                break
        else:
            raise UserError(f"{dom.name} level {level}: every prompt drawn is a train or eval "
                            "task; set its model.build.level_weights entry to 0 or shrink the "
                            "splits (domain.generate)")
    return tasks


def recipe_key(settings: TinySettings) -> dict[str, Any]:
    """The manifest key of a recipe build: what its weights depend on, read from the configs
    alone (no task is generated)."""
    from bots_cli.domains.base import default_config

    try:
        generate = default_config(settings.domain).get("generate")
    except OSError:
        raise UserError(f"model.build.domain={settings.domain}: no conf/domain/"
                        f"{settings.domain}.yaml") from None
    return {"format": FORMAT, "build": settings.recipe(),
            "splits": {"domain": settings.domain, "generate": generate}}


def warm_start_pairs(settings: TinySettings) -> list[tuple[str, str]]:
    """What the warm start trains on. Fresh data: one new task per warm-start sample (a single
    pass over a generated stream, levels weighted by `level_weights`), none of them a prompt of
    the domain's shipped train or eval split; otherwise the shipped train split, cycled."""
    fresh = settings.warm.batch_size * settings.strong_steps if settings.fresh_data else 0
    return domain_pairs(settings.domain, None, build_tokenizer(), fresh=fresh,
                        seed=settings.seed, level_weights=settings.level_weights)


_NOTED: set[str] = set()  # notes already printed by this process (a command loads weak and strong)


def ensure_tiny(model_cfg: Any, domain_cfg: Any = None, *, force: bool = False,
                progress: bool = True, out_dir: Path | None = None) -> TinyBuild:
    """The tiny build described by `model_cfg`, from the cache when it matches, else built now.

    `domain_cfg` (the command's domain) never changes the build; when it is the warm-start domain
    with data other than the shipped splits, one line on stderr says what the model held out.
    `out_dir` builds somewhere else than `model.build.dir` (`bots build-tiny build.verify=true`).
    """
    settings = TinySettings.from_config(model_cfg)
    out = settings.build_dir if out_dir is None else Path(out_dir)
    key = recipe_key(settings)
    _note_other_data(settings, domain_cfg)
    if not force and checkpoints.matching_build(out, key, CHECKPOINTS):
        return _cached(out)
    if out_dir is None and not force:
        _note(f"building the tiny model in {out} from its recipe (minutes on a CPU, once per "
              "recipe)")
    return _train_build(warm_start_pairs(settings), out, key, settings.weak_steps,
                        settings.strong_steps, settings.seed, settings.arch, settings.warm,
                        progress)


def _note_other_data(settings: TinySettings, domain_cfg: Any) -> None:
    """One line when the command's splits of the warm-start domain are not the shipped ones."""
    if domain_cfg is None or domain_cfg.get("name") != settings.domain:
        return
    from bots_cli.domains import load_domain
    from bots_cli.domains.base import SPLITS

    shipped, yours = load_domain(settings.domain), load_domain(settings.domain, domain_cfg)
    differ = [f"domain.data.{s}={yours.data_path(s)}" for s in SPLITS
              if (yours.cfg.get("data") or {}).get(s)
              and yours.data_path(s).resolve() != shipped.data_path(s).resolve()]
    if differ:
        _note(f"the tiny model was warm-started with the shipped {settings.domain} splits held "
              f"out, not {', '.join(differ)}: its warm-start tasks may include some of yours")


def _note(line: str) -> None:
    if line not in _NOTED:
        _NOTED.add(line)
        print(f"note: {line}", file=sys.stderr)
