"""Profile tables: reading, writing (atomically, with the generation settings) and aligning.

A profile table has one row per task: `task_id`, `model`, `n` (rollouts), `successes` (sum of
rewards, may be fractional) and `pass_rate` = successes / n. The generation settings that
produced it are stored in the parquet file's metadata, so a resumed run can check it continues
with the same settings and a reader can see how the rates were obtained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bots_cli.atomic import atomic_path
from bots_cli.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("task_id", "model", "n", "successes", "pass_rate")
SETTINGS_KEY = b"bots.settings"


def profile_path(profiles_dir: Path, domain: str, model: str, split: str = "train") -> Path:
    """data/profiles/<domain>/<model>.parquet for the train split (what selectors read), and
    <model>.<split>.parquet for another split."""
    suffix = "" if split == "train" else f".{split}"
    return Path(profiles_dir) / domain / f"{model}{suffix}.parquet"


def write_with_settings(path: Path, frame: pd.DataFrame, settings: dict[str, Any]) -> None:
    """Write `frame` as parquet with `settings` in its metadata, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SETTINGS_KEY] = json.dumps(settings, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def settings_of(table: Any) -> dict[str, Any]:
    """The settings stored by `write_with_settings` in a pyarrow table's metadata ({} if none)."""
    raw = (table.schema.metadata or {}).get(SETTINGS_KEY)
    return json.loads(raw) if raw else {}


def write_profile(path: Path, frame: pd.DataFrame, settings: dict[str, Any]) -> None:
    """Write `frame` with `settings` in its metadata; readers never see a half-written file."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"profile frame lacks columns {missing}")
    write_with_settings(path, frame[list(COLUMNS)], settings)


def read_profile(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A profile table and its generation settings; one-line errors for unusable files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserError(f"profile {path} does not exist")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise UserError(f"profile {path} is not a readable parquet file ({err})") from None
    frame = table.to_pandas()
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"profile {path} lacks the columns {', '.join(missing)}")
    rates = frame["pass_rate"].to_numpy(dtype=np.float64)
    if np.isnan(rates).any() or (rates < 0).any() or (rates > 1).any():
        raise UserError(f"profile {path} has pass rates outside [0, 1] or NaN")
    n = frame["n"].to_numpy(dtype=np.float64)
    successes = frame["successes"].to_numpy(dtype=np.float64)
    bad = np.isnan(n) | np.isnan(successes) | (n < 1) | (successes < 0) | (successes > n)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"profile {path}: task {frame['task_id'].iloc[i]!r} has "
                        f"{_plain(successes[i])} successes out of n = {_plain(n[i])} rollouts; "
                        f"every row needs 0 ≤ successes ≤ n and n ≥ 1 ({int(bad.sum())} rows "
                        "do not)")
    if frame["task_id"].duplicated().any():
        raise UserError(f"profile {path} lists a task twice "
                        f"({frame['task_id'][frame['task_id'].duplicated()].iloc[0]!r})")
    return frame, settings_of(table)


def _plain(x: float) -> str:
    """A number as a reader writes it: 8 rather than 8.0 or np.float64(8.0)."""
    return str(int(x)) if float(x).is_integer() else f"{float(x):g}"


def align_pass_rates(task_ids: pd.Series, frame: pd.DataFrame, source: str, fix: str) -> np.ndarray:
    """The profile's pass rates in the task table's order, or one line saying what is missing.

    `source` names the profile (for the message) and `fix` the command that repairs it.
    """
    rates = frame.set_index("task_id")["pass_rate"]
    missing = ~task_ids.isin(rates.index)
    if missing.any():
        example = task_ids[missing].iloc[0]
        raise UserError(
            f"{source} covers {int((~missing).sum())} of {len(task_ids)} tasks: "
            f"{int(missing.sum())} tasks are missing (e.g. {example!r}); run `{fix}`"
        )
    return rates.reindex(task_ids).to_numpy(dtype=np.float64)


def pass_rate_summary(rates: np.ndarray, levels: np.ndarray | None = None) -> dict[str, Any]:
    """Share of tasks never solved, sometimes solved, always solved; mean pass rate by level."""
    rates = np.asarray(rates, dtype=np.float64)
    out: dict[str, Any] = {
        "tasks": int(rates.size),
        "mean": float(rates.mean()) if rates.size else float("nan"),
        "share_zero": float(np.mean(rates == 0.0)) if rates.size else float("nan"),
        "share_between": float(np.mean((rates > 0.0) & (rates < 1.0))) if rates.size else
        float("nan"),
        "share_one": float(np.mean(rates == 1.0)) if rates.size else float("nan"),
    }
    if levels is not None:
        levels = np.asarray(levels)
        out["mean_by_level"] = {
            int(lv): float(rates[levels == lv].mean()) for lv in np.unique(levels)
        }
    return out
