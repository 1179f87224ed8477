"""Scoring a model on a task set: k completions per task, avg@k, pass@k, per level.

Used by `bots train` (its periodic `eval/*` metrics), `bots evaluate` and `bots profile-refs`.
Every evaluation samples with the same seed, so two evaluations of the same weights draw the same
completions and a difference between two checkpoints measures the weights, not the sampling noise.

The two commands that score whole task sets (`evaluate`, `profile-refs`) share one resumable
loop, `score_in_chunks`: chunk c of the tasks samples with a seed derived from (seed, c), and each
chunk's rows are saved (atomically, with the settings in the file's metadata) before the next
starts. A killed run resumes from its file (`resume_table` checks the settings are the same) and
gives exactly the table an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.checks import check_choice, check_int
from bots_cli.errors import UserError
from bots_cli.metrics import pass_at_k
from bots_cli.seeds import derive_seed

# Tasks per chunk of an evaluation of a whole held-out set (the in-training one): chunk c samples
# with a seed derived from (seed, c), as `bots evaluate` does with its default
# evaluate.chunk_size, so both give the same draws, and the same accuracy, for the same weights.
WHOLE_SET_CHUNK = 256


@dataclass
class EvalResult:
    task_ids: list[str]
    levels: np.ndarray | None  # (E,) or None when the tasks have no level
    rewards: np.ndarray  # (E, k) reward of each completion, in [0, 1]
    texts: list[list[str]]  # (E, k) the completions
    prompts: list[str] | None = None  # (E,) the rendered prompts, as the model saw them
    answers: list[str] | None = None  # (E,) the tasks' ground truth

    @property
    def k(self) -> int:
        return int(self.rewards.shape[1])

    def per_task(self) -> dict[str, np.ndarray]:
        """avg@k and pass@k of every task (pass@k counts a reward of 1 as correct)."""
        correct = (self.rewards >= 1.0).sum(axis=1)
        return {
            "avg_at_k": self.rewards.mean(axis=1),
            "pass_at_k": np.array([pass_at_k(self.k, int(c), self.k) for c in correct]),
        }

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """`accuracy` (mean avg@k: the score curves and `bots report` use), `pass@k`, and the
        accuracy of each level (`level_1`, ...)."""
        per = self.per_task()
        out = {f"{prefix}accuracy": float(per["avg_at_k"].mean()),
               f"{prefix}pass@{self.k}": float(per["pass_at_k"].mean())}
        if self.levels is not None:
            for level in np.unique(self.levels):
                out[f"{prefix}level_{int(level)}"] = float(
                    per["avg_at_k"][self.levels == level].mean())
        return out

    def samples(self, count: int) -> list[dict[str, Any]]:
        """The first completion of the first `count` tasks, with the prompt the model saw and
        the task's answer, for a look at what the model writes."""
        out = []
        for i in range(min(count, len(self.texts))):
            sample: dict[str, Any] = {"task_id": self.task_ids[i]}
            if self.prompts is not None:
                sample["prompt"] = self.prompts[i]
            if self.answers is not None:
                sample["answer"] = self.answers[i]
            out.append({**sample, "completion": self.texts[i][0],
                        "reward": float(self.rewards[i, 0])})
        return out


class HeldOut:
    """A fixed set of held-out tasks with their prompts rendered once for one tokenizer."""

    def __init__(self, domain: Any, tasks: Any, tokenizer: Any) -> None:
        from bots_cli.models.loading import render_prompt_for_model

        self.domain = domain
        self.rows = [row for _, row in tasks.iterrows()]
        self.task_ids = [str(t) for t in tasks["task_id"]]
        self.levels = tasks["level"].to_numpy() if "level" in tasks.columns else None
        self.prompts = [render_prompt_for_model(tokenizer, domain.render_messages(r))
                        for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def evaluate(self, engine: Any, k: int, sampling: Any, seed: int,
                 subset: Sequence[int] | None = None,
                 timings: dict[str, float] | None = None) -> EvalResult:
        """k completions of every task (or of `subset`) sampled with `seed`, and their rewards.

        The whole set is sampled in chunks of `WHOLE_SET_CHUNK` tasks, chunk c with a seed
        derived from (seed, c): the draws of `bots evaluate` with the same seed (a `subset` is
        one chunk, sampled with `seed` as given). `timings`, if given, accumulates the seconds
        spent in `generate` and in `reward`.
        """
        if subset is None:
            n = len(self.rows)
            parts = [self.evaluate(engine, k, sampling, derive_seed(seed, c),
                                   list(range(start, min(start + WHOLE_SET_CHUNK, n))), timings)
                     for c, start in enumerate(range(0, n, WHOLE_SET_CHUNK))]
            return EvalResult(
                task_ids=[t for p in parts for t in p.task_ids],
                levels=None if self.levels is None else self.levels.copy(),
                rewards=np.concatenate([p.rewards for p in parts]) if parts
                else np.zeros((0, k)),
                texts=[t for p in parts for t in p.texts],
                prompts=list(self.prompts),
                answers=[a for p in parts for a in (p.answers or [])],
            )
        idx = list(subset)
        params = dataclasses.replace(sampling, seed=seed)
        started = time.perf_counter()
        groups = engine.generate([self.prompts[i] for i in idx], k, params)
        generated = time.perf_counter()
        texts = [[c.text for c in g] for g in groups]
        rewards = self.domain.rewards([t for g in texts for t in g],
                                   [self.rows[i] for i in idx for _ in range(k)])
        if timings is not None:
            timings["generate"] = timings.get("generate", 0.0) + generated - started
            timings["reward"] = timings.get("reward", 0.0) + time.perf_counter() - generated
        return EvalResult(
            task_ids=[self.task_ids[i] for i in idx],
            levels=None if self.levels is None else self.levels[idx],
            rewards=np.asarray(rewards, dtype=np.float64).reshape(len(idx), k),
            texts=texts,
            prompts=[self.prompts[i] for i in idx],
            answers=[str(self.rows[i]["answer"]) for i in idx],
        )


def check_chunked_job(section: Any, key: str) -> None:
    """The options `profile-refs` and `evaluate` share: n, chunk_size, split, max_tasks."""
    check_int(f"{key}.n", section.n, lo=1)
    check_int(f"{key}.chunk_size", section.chunk_size, lo=1)
    check_choice(f"{key}.split", section.split, ("train", "eval"))
    if section.max_tasks is not None:
        check_int(f"{key}.max_tasks", section.max_tasks, lo=1)


def resume_table(path: Path, settings: dict[str, Any], read: Callable[[Path], tuple[Any, dict]],
                 empty: Any, overwrite_key: str, overwrite: bool, made: str = "made") -> Any:
    """The rows a killed run left in `path`, when they were made with `settings`.

    `read(path)` gives (frame, its saved settings); no file gives `empty`. Rows made with other
    settings are dropped when `overwrite`, else refused in one line naming the first setting that
    differs and `overwrite_key` ("<path> was <made> with other settings ...").
    """
    if not path.is_file():
        return empty
    frame, saved = read(path)
    if saved != settings and overwrite:
        return empty
    if saved != settings:
        k = next((k for k in settings if saved.get(k) != settings[k]), "settings")
        raise UserError(f"{path} was {made} with other settings ({k}: {saved.get(k)!r} there, "
                        f"{settings.get(k)!r} now); set {overwrite_key}=true to start afresh, or "
                        "use the same settings to resume")
    return frame


def score_in_chunks(label: str, pending: Sequence[bool], chunk_size: int, seed: int,
                    score: Callable[[list[int], int], Any], save: Callable[[Any], None],
                    where: Path) -> None:
    """Score the pending tasks chunk by chunk: `score(indices, seed)` gives a chunk's rows,
    `save(rows)` makes them durable (the resume point).

    Chunks are fixed slices of the whole task list, so chunk c always has seed
    derive_seed(seed, c) whichever of its tasks are still pending: a resumed run samples what an
    uninterrupted one would. A resume and an interruption each say so in one line.
    """
    todo, total = int(sum(pending)), len(pending)
    if todo < total:
        print(f"{label}: resuming {where}: {total - todo} of {total} tasks already done",
              file=sys.stderr)
    done = 0
    try:
        with TaskProgress(label, todo) as advance:
            for chunk, start in enumerate(range(0, total, chunk_size)):
                idx = [i for i in range(start, min(start + chunk_size, total)) if pending[i]]
                if idx:
                    save(score(idx, derive_seed(seed, chunk)))
                    done += len(idx)
                    advance(len(idx))
    except KeyboardInterrupt:
        saved = total - todo + done
        if saved:
            print(f"{label}: interrupted; {saved} of {total} tasks are saved in {where}: run "
                  "the same command to resume", file=sys.stderr)
        else:
            print(f"{label}: interrupted before its first chunk of {min(chunk_size, total)} "
                  f"tasks was saved: nothing is in {where} yet", file=sys.stderr)
        raise


class TaskProgress:
    """A rich progress bar with throughput and ETA, advanced by tasks done."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total

    def __enter__(self) -> Callable[[int], None]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, rate="")
        self.started = time.perf_counter()
        self.count = 0

        def advance(k: int) -> None:
            self.count += k
            rate = self.count / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.task, advance=k, rate=f"{rate:.1f} tasks/s")

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
