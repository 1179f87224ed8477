"""The plots of a "What was chosen" section (chosen.py): a heatmap of the share of selections by a
task-table column over training, the selected tasks' pass rates against the target, the
selector's calibration and, for BOTS, its capability estimate beside held-out accuracy."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bots_cli.analysis.comparison import _pyplot, _save


def plot_shares(shares: pd.DataFrame, path: Path, *, title: str, column: str) -> None:
    """Heatmap: x the pool's share then each step window, y the column's values, colour the
    share; the pool column is annotated (a uniform selector matches it in every window)."""
    plt = _pyplot()
    data = shares.to_numpy(dtype=float)  # (values, 1 + windows)
    rows, cols = data.shape
    top = float(np.nanmax(data)) if np.isfinite(data).any() else 1.0
    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.45 * cols + 3)),
                                    min(12, max(3, 0.35 * rows + 1.8))), dpi=120)
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", origin="lower", cmap="viridis",
                      vmin=0.0, vmax=top or 1.0)
    for r in range(rows):
        for c in range(cols if cols <= 12 else 1):
            if np.isfinite(data[r, c]):
                ax.text(c, r, f"{data[r, c]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if data[r, c] < 0.6 * top else "black")
    ax.axvline(0.5, color="white", linewidth=3)
    ax.set_xticks(range(cols), list(shares.columns), rotation=90 if cols > 8 else 0, fontsize=8)
    ax.set_yticks(range(rows), [str(v) for v in shares.index], fontsize=8)
    ax.set(xlabel="the pool, then windows of training steps", ylabel=column, title=title)
    fig.colorbar(image, ax=ax, label="share of selections")
    _save(fig, path)


def plot_rates(sel: pd.DataFrame, target: float, path: Path, *, title: str) -> None:
    """Histogram of the selected groups' observed pass rates, the target as a vertical line."""
    plt = _pyplot()
    rate = (sel["successes"] / sel["trials"]).to_numpy()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.hist(rate, bins=np.linspace(-0.025, 1.025, 22), weights=np.full(len(rate), 1 / len(rate)),
            color="C0", edgecolor="white")
    ax.axvline(target, color="C3", linestyle="--", label=f"target p* = {target:g}")
    ax.set(xlabel="observed pass rate of a selected task (successes / trials)",
           ylabel="share of selections", title=title)
    ax.legend()
    _save(fig, path)


def plot_calibration(table: pd.DataFrame, path: Path, *, title: str) -> None:
    """Reliability: mean observed rate against mean prediction per bin (size: count)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    size = 20 + 200 * table["count"] / table["count"].max()
    ax.plot(table["mean_predicted"], table["mean_observed"], "-", color="C0", alpha=0.5)
    ax.scatter(table["mean_predicted"], table["mean_observed"], s=size, color="C0",
               label="bins of the prediction (size: count)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="posterior mean at selection",
           ylabel="observed pass rate", title=title)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_capability(runs: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """Capability μ̃ (left axis) and held-out accuracy (right axis) against step, per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    twin = ax.twinx()
    for i, run in enumerate(runs):
        if run["capability"]:
            ax.plot(*zip(*run["capability"], strict=True), color="C0", alpha=0.8,
                    label="capability μ̃" if i == 0 else None)
        if run["accuracy"]:
            twin.plot(*zip(*run["accuracy"], strict=True), "o-", color="C1", alpha=0.8,
                      label="held-out accuracy" if i == 0 else None)
    ax.set(xlabel="training step", title=title)
    ax.set_ylabel("capability estimate μ̃", color="C0")
    twin.set_ylabel("eval/accuracy", color="C1")
    ax.grid(alpha=0.3)
    handles = [h for a in (ax, twin) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    _save(fig, path)


def write_plots(analysis: Any, out_dir: Path) -> dict[str, str]:
    """The PNGs of a section (a `chosen.SelectionAnalysis`) in `out_dir`: kind -> file name
    (calibration and capability only when the runs have them)."""
    stem = f"chosen-{slug(analysis.label)}"
    names = {"share": f"{stem}-by-{slug(analysis.column)}.png", "rates": f"{stem}-pass-rates.png"}
    plot_shares(analysis.shares, out_dir / names["share"], column=analysis.column,
                title=f"{analysis.label}: share of selections by {analysis.column}")
    plot_rates(analysis.selections, analysis.target, out_dir / names["rates"],
               title=f"{analysis.label}: pass rates of the selected tasks")
    if analysis.calib["pairs"]:
        names["calibration"] = f"{stem}-calibration.png"
        plot_calibration(analysis.calib["table"], out_dir / names["calibration"],
                         title=f"{analysis.label}: calibration")
    if any(r["capability"] for r in analysis.capability["runs"]):
        names["capability"] = f"{stem}-capability.png"
        plot_capability(analysis.capability["runs"], out_dir / names["capability"],
                        title=f"{analysis.label}: capability and held-out accuracy")
    return names


def slug(label: str) -> str:
    """A file-name stem unique per label: the label's safe characters, plus a short hash of the
    label when some had to be replaced (so "a b" and "a_b" never share a file)."""
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") or "group"
    return safe if safe == label else f"{safe}-{hashlib.sha1(label.encode()).hexdigest()[:6]}"
