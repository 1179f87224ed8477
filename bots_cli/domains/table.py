"""Reading and writing task tables (DESIGN.md §4), with the checks a user's file needs.

Users bring files in other people's formats (MATH's `problem`/`solution`, GURU's chat-message
prompts and `reward_model.ground_truth`), so a domain config maps each task-table column onto a
column of the file (`columns: {prompt: problem, ...}`; a dotted name reaches into a struct/dict
column). Everything wrong with a file becomes one `UserError` line naming the file, the column,
the row and what to do: a traceback is not a helpful answer to a typo in a dataset.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bots_cli.checks import shown
from bots_cli.errors import InvalidValue, UserError

REQUIRED = ("task_id", "prompt", "answer")
PASS_RATES = ("weak_pass_rate", "strong_pass_rate")  # reference pass rates a selector may read
ROLES = ("system", "user", "assistant", "tool")  # chat-message roles chat templates know
_LEVEL_TEXT = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)


def read_table(path: Path) -> Any:
    """The raw file as a DataFrame (jsonl or parquet), or a one-line error."""
    import pandas as pd

    if path.is_dir():
        raise UserError(f"task file {path} is a directory; point domain.data.<split> at a "
                        ".jsonl or .parquet file")
    if not path.is_file():
        raise UserError(f"task file {path} does not exist; generate it with `bots make-data "
                        f"domain=<name>` or point domain.data.<split> at your file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".jsonl", ".json"):
            # dtype=False: an answer "007" or "19" stays text, exactly as written.
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            raise UserError(f"task file {path} must be .parquet or .jsonl, got {suffix!r}")
    except UserError:
        raise
    except Exception as err:  # pyarrow and pandas raise many types for a corrupt file
        if suffix in (".jsonl", ".json"):
            _raise_bad_json_line(path)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read task file {path}: {first}") from None
    if len(df) == 0:
        raise UserError(f"task file {path} has no rows")
    return df


def _raise_bad_json_line(path: Path) -> None:
    """Name the first line of a jsonl file that is not one JSON object (`file:line`)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: not valid JSON ({err.msg} at column "
                                f"{err.colno}); each line must hold one task as a JSON object") \
                    from None
            if not isinstance(value, dict):
                raise UserError(f"{path}:{number}: a {type(value).__name__}, not a JSON object; "
                                "each line must hold one task as a JSON object")


def _pick(df: Any, source: str, path: Path, target: str) -> Any | None:
    """Column `source` of df (dotted: into dict/struct columns); None if the column is absent.

    A column whose own name has dots (GURU's `qwen2.5_7b_pass_rate`) is taken as is.
    """
    if source in df.columns:
        return df[source]
    head, *rest = source.split(".")
    if head not in df.columns:
        return None
    col = df[head]
    for key in rest:
        def get(v: Any, key: str = key) -> Any:
            if isinstance(v, Mapping) and key in v:
                return v[key]
            raise UserError(f"{path}: column {source!r} (domain.columns.{target}) is missing "
                            f"key {key!r} in some row; every row needs it")
        col = col.map(get)
    return col


def _missing(v: Any) -> bool:
    """A null cell: None, or a float NaN (how pandas fills a missing value)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _row(i: int) -> str:
    return f"row {i + 1}"


def _check_task_ids(values: list[Any], path: Path) -> list[str]:
    out: list[str] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise UserError(f"{path}: task_id must be text or an integer, {_row(i)} has "
                            f"{shown(v)} ({type(v).__name__})")
        s = str(v).strip()
        if not s:
            raise UserError(f"{path}: {_row(i)} has an empty task_id; every task needs an id")
        out.append(s)
    seen: dict[str, int] = {}
    for i, s in enumerate(out):
        if s in seen:
            raise UserError(f"{path}: task_id {s!r} is duplicated ({_row(seen[s])} and {_row(i)}); "
                            f"task ids must be unique")
        seen[s] = i
    return out


def _check_prompt(v: Any, i: int, path: Path) -> Any:
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()  # parquet list columns arrive as numpy arrays
    if isinstance(v, str):
        if not v.strip():
            raise UserError(f"{path}: {_row(i)} has an empty prompt")
        return v
    if isinstance(v, list) and v and all(
        isinstance(m, Mapping) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str) for m in v
    ):
        bad = next((m["role"] for m in v if m["role"] not in ROLES), None)
        if bad is not None:
            raise UserError(f"{path}: {_row(i)} has a chat message with role {bad!r}; a role "
                            f"is one of {', '.join(ROLES)}")
        return [{"role": m["role"], "content": m["content"]} for m in v]
    raise UserError(f"{path}: prompt must be text or a list of chat messages "
                    f"({{'role': ..., 'content': ...}}), {_row(i)} has {type(v).__name__}")


def _check_answer(v: Any, i: int, path: Path) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if hasattr(v, "item") and isinstance(v.item(), int):  # numpy integers
        return str(v.item())
    raise UserError(f"{path}: answer must be text, {_row(i)} has {shown(v)} ({type(v).__name__})")


def _check_level(v: Any, i: int, path: Path) -> int | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str):
        m = _LEVEL_TEXT.match(v)
        if m:
            return int(m.group(1))
        if v.strip() in ("", "?", "Level ?"):
            return None
    elif not isinstance(v, bool):
        if isinstance(v, (int, float)) and float(v).is_integer():
            return int(v)
        if hasattr(v, "item") and float(v.item()).is_integer():
            return int(v.item())
    raise UserError(f"{path}: level must be an integer (or text like 'Level 3'), {_row(i)} has "
                    f"{shown(v)}")


def _check_rates(col: Any, name: str, source: str, path: Path) -> Any:
    import pandas as pd

    from bots_cli.checks import check_rates

    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise UserError(f"{path}: {name} (column {source!r}) must be numeric, {_row(i)} has "
                        f"{shown(col.iloc[i])}")
    try:
        return check_rates(f"{path}: {name} (column {source!r})", values.to_numpy(float),
                           len(values))
    except InvalidValue as err:
        raise UserError(str(err)) from None


def normalise(df: Any, columns: Mapping[str, Any], domain: str, path: Path) -> Any:
    """Map `df` onto the task-table schema via `columns` and validate every column."""
    import pandas as pd

    out: dict[str, Any] = {}
    n = len(df)
    for target, source in columns.items():
        if source is None:
            continue
        col = _pick(df, str(source), path, target)
        if col is None:
            if target in REQUIRED or target in PASS_RATES:
                raise UserError(f"{path}: column {source!r} is missing (domain.columns.{target} "
                                f"maps it to {target}); the file has: "
                                f"{', '.join(map(str, df.columns))}")
            continue  # optional (level, domain, extras): absent in this file
        out[target] = col.reset_index(drop=True)
    for target in REQUIRED:
        if columns.get(target) is None and target != "task_id":
            raise UserError(f"domain.columns.{target} is null, but every task needs a {target}")
        # A missing value first: one null among integers turns the whole column into floats,
        # and the type check below would then blame the first row rather than the empty one.
        empty = [i for i, v in enumerate(out[target]) if _missing(v)] if target in out else []
        if empty:
            more = f" ({len(empty) - 1} more rows have none either)" if len(empty) > 1 else ""
            raise UserError(f"{path}: {_row(empty[0])} has no {target} (null){more}; every task "
                            f"needs one")
    if "task_id" in out:
        ids = _check_task_ids(out["task_id"].tolist(), path)
    else:  # no id column mapped: stable ids from the file name and row number
        ids = [f"{path.stem}-{i}" for i in range(n)]
    table: dict[str, Any] = {"task_id": ids}
    table["prompt"] = [_check_prompt(v, i, path) for i, v in enumerate(out["prompt"])]
    table["answer"] = [_check_answer(v, i, path) for i, v in enumerate(out["answer"])]
    if "domain" in out:
        bad = [i for i, v in enumerate(out["domain"]) if not isinstance(v, str)]
        if bad:
            raise UserError(f"{path}: domain must be text, {_row(bad[0])} has "
                            f"{out['domain'][bad[0]]!r}")
        table["domain"] = out["domain"].tolist()
    else:
        table["domain"] = [domain] * n
    if "level" in out:
        table["level"] = pd.array([_check_level(v, i, path) for i, v in enumerate(out["level"])],
                                  dtype="Int64")
    for name in PASS_RATES:
        if name in out:
            table[name] = _check_rates(out[name], name, str(columns[name]), path)
    for name, col in out.items():
        if name not in table:
            table[name] = col.tolist()
    return pd.DataFrame(table)


def load_task_table(path: Path, columns: Mapping[str, Any], domain: str) -> Any:
    """Read `path` and return it in the task-table schema, validated."""
    return normalise(read_table(path), columns, domain, path)


def write_task_table(df: Any, path: Path) -> None:
    """Write atomically (temp file + rename): a reader never sees half a file."""
    from bots_cli.atomic import atomic_path

    with atomic_path(path) as tmp:  # the umask's permissions; no temp file left by SIGTERM
        if path.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            with tmp.open("w", encoding="utf-8") as f:
                for rec in df.to_dict(orient="records"):
                    f.write(json.dumps(_plain(rec), ensure_ascii=False) + "\n")


def _plain(rec: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready values: numpy scalars to Python, pandas NA to None."""
    import pandas as pd

    out = {}
    for k, v in rec.items():
        if hasattr(v, "item"):
            v = v.item()
        if not isinstance(v, (str, list, dict)) and pd.isna(v):
            v = None
        out[k] = v
    return out
