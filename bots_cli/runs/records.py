"""What a training run records: metrics.jsonl, selections.parquet, samples.jsonl, and wandb.

The files in the run directory are the source of truth (DESIGN.md §4); wandb mirrors the metrics
when `logger=wandb`. On resume from the checkpoint of step S, every record after S is dropped
first, so the resumed run's files equal those of a run that was never interrupted.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.atomic import atomic_path, write_text
from bots_cli.checks import check_choice
from bots_cli.errors import UserError

WANDB_MODES = ("auto", "online", "offline", "disabled")
# selections.parquet: one row per task of each sampling round. `round`, `trained` and `predicted`
# came with dynamic sampling; files written before lack them (read_selections fills them in).
SELECTION_COLUMNS = {"step": "int64", "task_id": "str", "successes": "float64",
                     "trials": "float64", "round": "int64", "trained": "bool",
                     "predicted": "float64"}


def wandb_mode(requested: str) -> str:
    """`auto` means online when the user is logged in to wandb, offline otherwise."""
    check_choice("logger.mode", requested, WANDB_MODES)
    if requested != "auto":
        return requested
    import wandb

    return "online" if wandb.login(prompt=False, verify=False) else "offline"


def read_jsonl_upto(path: Path, last_step: float) -> list[str]:
    """The lines of a jsonl file whose `step` ≤ last_step.

    Only the last line may be torn (a write interrupted by a kill) and is then dropped; a broken
    line anywhere else means the file was damaged otherwise, and that is an error.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    kept = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UserError(f"{path} line {i + 1} is not JSON: the run's records are damaged; "
                            "restore the file or start a new run") from None
        if row.get("step", 0) <= last_step:
            kept.append(line)
    return kept


def check_records(run_dir: Path, step: int) -> None:
    """Refuse to resume from the checkpoint of `step` when the run's records stop before it
    (metrics.jsonl or selections.parquet deleted, replaced or cut): the resumed run would hold
    only its new steps, silently. One line naming the file and what to do."""
    import pandas as pd

    if step <= 0:
        return
    fix = "restore it from a copy, or start a new run"
    metrics = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in read_jsonl_upto(metrics, step)]
    last = max((int(r.get("step", 0)) for r in rows), default=None)
    if last is None or last < step:
        held = "is missing" if not metrics.is_file() else (
            "holds no step" if last is None else f"stops at step {last}")
        raise UserError(f"{metrics} {held}, but the checkpoint to resume from is of step "
                        f"{step}: the run's records do not match it; {fix}")
    selections = Path(run_dir) / "selections.parquet"
    if not selections.is_file():
        raise UserError(f"{selections} is missing, but the checkpoint to resume from is of step "
                        f"{step}: the run's records do not match it; {fix}")
    try:
        steps = pd.read_parquet(selections, columns=["step"])["step"]
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{selections} cannot be read ({type(err).__name__}): the run's "
                        f"records are damaged; {fix}") from None
    if steps.empty or int(steps.max()) < step:
        held = "holds no step" if steps.empty else f"stops at step {int(steps.max())}"
        raise UserError(f"{selections} {held}, but the checkpoint to resume from is of step "
                        f"{step}: the run's records do not match it; {fix}")


class RunLog:
    """The records of one training run."""

    def __init__(
        self,
        run_dir: Path,
        *,
        logger: dict[str, Any] | None = None,  # the `logger` config: name none|wandb, mode, ...
        run_name: str = "",
        group: str | None = None,
        config: dict[str, Any] | None = None,
        resume_step: int | None = None,
        tags: Sequence[str] = (),  # wandb tags besides the logger config's own `tags`
    ) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        self.selections_path = self.run_dir / "selections.parquet"
        self._selections: list[dict[str, Any]] = []
        if resume_step is not None:
            self._truncate(resume_step)
        self.wandb_run: Any = None
        logger = logger or {"name": "none"}
        if logger.get("name") == "wandb":
            self.wandb_run = self._start_wandb(logger, run_name, group, config, resume_step,
                                               [*tags, *logger["tags"]])

    def _truncate(self, step: int) -> None:
        for path in (self.metrics_path, self.samples_path):
            lines = read_jsonl_upto(path, step)
            write_text(path, "".join(line + "\n" for line in lines))
        if self.selections_path.is_file():
            frame = read_selections(self.selections_path)
            kept = frame[frame["step"] <= step]
            self._selections = [{str(k): v for k, v in row.items()}
                                for row in kept.to_dict("records")]

    def _start_wandb(self, cfg: dict[str, Any], name: str, group: str | None,
                     config: dict[str, Any] | None, resume_step: int | None,
                     tags: list[str]) -> Any:
        import wandb

        id_file = self.run_dir / "wandb_id.txt"
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:8]  # kept in the run dir: a resumed run continues it
            write_text(id_file, run_id + "\n")
        return wandb.init(
            project=cfg["project"],
            entity=cfg["entity"],
            dir=str(self.run_dir),
            name=name or None,
            group=group,
            config=config,
            mode=wandb_mode(cfg["mode"]),  # type: ignore[arg-type]
            tags=list(dict.fromkeys(str(t) for t in tags)) or None,
            id=run_id,
            resume="allow" if resume_step is not None else None,
        )

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one step's metrics (a flat dict of numbers) and mirror them to wandb."""
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def add_selections(self, step: int, task_ids: list[str], successes: np.ndarray,
                       trials: np.ndarray, *, round: int = 1,
                       trained: Sequence[bool] | np.ndarray | None = None,
                       predicted: Sequence[float] | np.ndarray | None = None) -> None:
        """Record which tasks a step's sampling round used and how they went (written by
        `flush`): whether each group went into the update (`trained`; all of them by default)
        and the selector's posterior mean of the task when it was chosen (`predicted`; NaN for
        selectors without one)."""
        n = len(task_ids)
        trained = [True] * n if trained is None else trained
        predicted = [math.nan] * n if predicted is None else predicted
        self._selections += [
            {"step": step, "task_id": t, "successes": float(s), "trials": float(k),
             "round": round, "trained": bool(x), "predicted": float(p)}
            for t, s, k, x, p in zip(task_ids, successes, trials, trained, predicted, strict=True)
        ]

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """A few prompt/completion/reward examples, e.g. at each evaluation."""
        with self.samples_path.open("a") as f:
            for sample in samples:
                f.write(json.dumps({"step": step, **sample}) + "\n")

    def flush(self) -> None:
        """Write selections.parquet (atomically); called at checkpoints and at the end."""
        import pandas as pd

        frame = pd.DataFrame(self._selections, columns=list(SELECTION_COLUMNS))
        frame = frame.astype(SELECTION_COLUMNS)
        with atomic_path(self.selections_path) as tmp:
            frame.to_parquet(tmp, index=False)

    def close(self) -> None:
        self.flush()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def read_selections(path: Path) -> Any:
    """A run's selections.parquet as a DataFrame with every column of `SELECTION_COLUMNS`."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{path} cannot be read ({type(err).__name__}): the run's records are "
                        "damaged; restore the file or start a new run") from None
    return with_selection_columns(frame)


def with_selection_columns(frame: Any) -> Any:
    """A copy of a selections table with every column of `SELECTION_COLUMNS`, typed: a file
    from before dynamic sampling gets round 1, trained True and predicted NaN."""
    frame = frame.copy()
    for column, value in {"round": 1, "trained": True, "predicted": math.nan}.items():
        if column not in frame.columns:
            frame[column] = value
    return frame.astype(SELECTION_COLUMNS)


def _plain(value: Any) -> Any:
    """numpy and torch scalars as Python numbers, so every row is plain JSON."""
    if hasattr(value, "item"):
        return value.item()
    return value


def open_run_log(cfg: Any, run_dir: Path, resume_step: int | None) -> RunLog:
    """The run's records (`RunLog`), mirrored to the configured logger under the run's name."""
    from omegaconf import OmegaConf

    def plain(node: Any) -> dict[str, Any]:
        tree = OmegaConf.to_container(node, resolve=True)
        assert isinstance(tree, dict)
        return {str(k): v for k, v in tree.items()}

    name, group = wandb_names(cfg)
    return RunLog(run_dir, logger=plain(cfg.logger), run_name=name, group=group,
                  config=plain(cfg), resume_step=resume_step, tags=[str(cfg.selector.name)])


def wandb_names(cfg: Any) -> tuple[str, str | None]:
    """(run name, group): a sweep's jobs are grouped by their multirun directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    name = hc.job.override_dirname or str(cfg.selector.name)
    group = None
    if hc.mode == RunMode.MULTIRUN:
        group = Path(hc.sweep.dir).name
    return name, group


def recorded_costs(metrics_path: Path, step: int, per_step: int) -> tuple[int, int]:
    """(rollouts, tokens) generated up to `step`, read back from a run's metrics.jsonl: its
    `train/rollouts` and `train/tokens` at that step, or, for a run recorded before they existed
    (no dynamic sampling then: `per_step` completions a step), `per_step` × steps and the sum of
    `train/response_len` × `per_step`."""
    rows = [json.loads(line) for line in read_jsonl_upto(metrics_path, step)]
    rows = [r for r in rows if "train/response_len" in r]
    if rows and "train/rollouts" in rows[-1]:
        return int(rows[-1]["train/rollouts"]), int(rows[-1]["train/tokens"])
    return per_step * len(rows), round(sum(r["train/response_len"] * per_step for r in rows))


def run_summary(run_dir: Path, cfg: Any, steps: int, elapsed: float) -> dict[str, Any]:
    """First, final and best held-out accuracy of the run, read back from metrics.jsonl."""
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    out: dict[str, Any] = {"selector": str(cfg.selector.name), "steps": steps,
                           "train_seconds": round(elapsed, 3)}
    if evals:
        best = max(evals, key=lambda e: e[1])
        out.update(eval_first={"step": evals[0][0], "accuracy": evals[0][1]},
                   eval_final={"step": evals[-1][0], "accuracy": evals[-1][1]},
                   eval_best={"step": best[0], "accuracy": best[1]})
    return out
