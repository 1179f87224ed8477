"""`bots make-data`: generate a domain's train and eval task tables and write them atomically.

With `make_data.out_dir: null` the files go to the domain's data paths, i.e. the shipped files
under data/ are regenerated (the same seed gives byte-identical files, so `git diff` shows any
change a generator edit causes). Every generated table goes through the same loader as users'
files before it is returned, so what is written is known to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots_cli.atomic import writable_dir
from bots_cli.checks import check_choice
from bots_cli.domains import load_domain
from bots_cli.domains.base import as_dict
from bots_cli.domains.table import load_task_table, write_task_table
from bots_cli.errors import UserError


def make_data(cfg: Any) -> dict[str, Any]:
    """Generate and write `cfg.domain`'s splits; return {split: {"path": ..., "rows": ...}}."""
    conf = as_dict(cfg.domain)
    domain = load_domain(str(conf.get("name")), conf)
    opts = as_dict(cfg.get("make_data"))
    fmt = check_choice("make_data.format", opts.get("format", "jsonl"), ("jsonl", "parquet"))
    out_dir = opts.get("out_dir")
    if out_dir:
        writable_dir(str(out_dir), "make_data.out_dir")
    splits = domain.make_splits()
    summary: dict[str, Any] = {}
    for split, df in splits.items():
        path = Path(out_dir) / f"{split}.{fmt}" if out_dir else domain.data_path(split)
        try:
            write_task_table(df, path)
        except OSError as err:
            raise UserError(f"cannot write {path}: {err.strerror or err}") from None
        columns = {c: c for c in df.columns}
        rows = len(load_task_table(path, columns, domain.name))
        summary[split] = {"path": str(path), "rows": rows}
        print(f"{domain.name} {split}: {rows} tasks -> {path}")
    return summary
