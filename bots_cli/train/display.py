"""What a training run shows while it runs: a rich live panel on a terminal, lines otherwise."""

from __future__ import annotations

import time
from typing import Any

COLUMNS = ("step", "reward", "ETR", "zero-var", "eval acc", "steps/s", "ETA")


def _fmt_eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "-"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


class TrainDisplay:
    """Step, reward, ETR, zero-variance share, last eval score, throughput and ETA."""

    def __init__(self, title: str, first_step: int, total: int, mode: str, log_every: int) -> None:
        from rich.console import Console

        self.console = Console()
        self.title, self.first, self.total, self.log_every = title, first_step, total, log_every
        self.live_mode = mode == "on" or (mode == "auto" and self.console.is_terminal)
        self.started = time.perf_counter()
        self.row: dict[str, str] = {}
        self.eval_score: float | None = None
        self.live: Any = None
        if self.live_mode:
            from rich.live import Live

            self.live = Live(self._render(), console=self.console, refresh_per_second=4,
                             transient=False)
            self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left")
        for col in COLUMNS:
            table.add_column(col, justify="right")
        table.add_row(*(self.row.get(c, "-") for c in COLUMNS))
        return table

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        if "eval/accuracy" in metrics:
            self.eval_score = float(metrics["eval/accuracy"])
        done = step - self.first
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 and done > 0 else float("nan")
        self.row = {
            "step": f"{step}/{self.total}",
            "reward": f"{metrics.get('train/reward_mean', float('nan')):.3f}",
            "ETR": f"{metrics.get('train/etr', float('nan')):.2f}",
            "zero-var": f"{metrics.get('train/zero_variance_share', float('nan')):.2f}",
            "eval acc": "-" if self.eval_score is None else f"{self.eval_score:.4f}",
            "steps/s": f"{rate:.2f}",
            "ETA": _fmt_eta((self.total - step) / rate if rate == rate and rate > 0
                            else float("nan")),
        }
        if "train/reward_mean" not in metrics:  # the evaluation of the starting point
            self.row = {c: "-" for c in COLUMNS} | {"step": f"{step}/{self.total}",
                                                    "eval acc": self.row["eval acc"]}
        if self.live is not None:
            self.live.update(self._render())
        elif step % self.log_every == 0 or step == self.total or "eval/accuracy" in metrics:
            self.console.print("  ".join(f"{c} {self.row[c]}" for c in COLUMNS
                                         if self.row[c] != "-"),
                               highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            if not self.console.is_terminal:  # the last frame ends without a newline there
                self.console.print()
