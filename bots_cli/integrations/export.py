"""`bots export`: a domain's task tables in the formats other engines read.

`format=verl` writes `<split>.parquet` for verl's `RLHFDataset`, one row per task:

| column | what |
| --- | --- |
| `data_source` | the domain name; `bots_cli.integrations.verl.reward.compute_score` scores by it |
| `prompt` | the task as chat messages (`[{"role": "user", "content": ...}]`) |
| `ability` | the domain name |
| `reward_model` | `{"style": "rule", "ground_truth": <answer>}` |
| `extra_info` | `index` (the row), `task_id`, `split`, `level` and the two pass rates |
| `task_id`, `level`, `weak_pass_rate`, `strong_pass_rate` | the same, as plain columns |

`extra_info.index` is the row's position in the train split: verl copies it into every batch as
`index`, which is how `BotsSampler` knows which task a response answered (a row without it would
silently be task 0). `format=trl` writes `<split>.jsonl` for `datasets.load_dataset("json")`:
`task_id`, `prompt` (chat messages), `answer`, `domain`, `level` and the pass rates.

The reference pass rates come from the task table's own columns or from `bots profile-refs`
profiles of that split (`export.references`). Files are written atomically; existing ones are
replaced only with `export.overwrite=true`.
"""

from __future__ import annotations

from typing import Any

from bots_cli.atomic import atomic_path, writable_dir
from bots_cli.checks import check_choice
from bots_cli.domains.base import SPLITS
from bots_cli.errors import UserError

FORMATS = ("verl", "trl")
REFERENCES = ("auto", "required", "none")


def _rates(cfg: Any, dom: Any, tasks: Any, split: str) -> tuple[Any, Any] | None:
    """(weak, strong) pass rates of `tasks`, or None where `export.references=auto` finds none."""
    from bots_cli.references.pass_rates import reference_pass_rates
    from bots_cli.references.profile import profiles_dir

    mode = check_choice("export.references", cfg.export.references, REFERENCES)
    if mode == "none":
        return None
    try:
        return reference_pass_rates(tasks, dom.name, cfg.refs,
                                    profiles_dir(cfg.export.get("profiles_dir")), cfg.domain,
                                    split=split)
    except UserError:
        if mode == "required":
            raise
        return None


def verl_rows(dom: Any, tasks: Any, split: str, rates: tuple[Any, Any] | None
              ) -> list[dict[str, Any]]:
    rows = []
    for i, (_, task) in enumerate(tasks.iterrows()):
        weak = None if rates is None else float(rates[0][i])
        strong = None if rates is None else float(rates[1][i])
        level = int(task["level"]) if "level" in tasks.columns else None
        extra = {"index": i, "task_id": str(task["task_id"]), "split": split, "level": level,
                 "weak_pass_rate": weak, "strong_pass_rate": strong}
        rows.append({"data_source": dom.name, "prompt": dom.render_messages(task),
                     "ability": dom.name,
                     "reward_model": {"style": "rule", "ground_truth": str(task["answer"])},
                     "extra_info": extra, "task_id": str(task["task_id"]), "level": level,
                     "weak_pass_rate": weak, "strong_pass_rate": strong})
    return rows


def trl_rows(dom: Any, tasks: Any, rates: tuple[Any, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for i, (_, task) in enumerate(tasks.iterrows()):
        rows.append({"task_id": str(task["task_id"]), "prompt": dom.render_messages(task),
                     "answer": str(task["answer"]), "domain": dom.name,
                     "level": int(task["level"]) if "level" in tasks.columns else None,
                     "weak_pass_rate": None if rates is None else float(rates[0][i]),
                     "strong_pass_rate": None if rates is None else float(rates[1][i])})
    return rows


def export(cfg: Any) -> dict[str, Any]:
    """The `bots export` command: write the domain's splits in `format` (verl or trl)."""
    import pandas as pd

    from bots_cli.domains import load_domain

    fmt = check_choice("format", cfg.format, FORMATS)
    if not cfg.export.get("out_dir"):
        raise UserError("export.out_dir is required: the directory to write the "
                        f"{fmt} files to, e.g. export.out_dir=exports/{cfg.domain.name}")
    splits = [str(split) for split in cfg.export.splits]
    if not splits:
        raise UserError(f"export.splits is empty: nothing to export; name the splits, e.g. "
                        f"export.splits=[{','.join(SPLITS)}]")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise UserError(f"export.splits: no split {unknown[0]!r} (splits: {', '.join(SPLITS)})")
    out_dir = writable_dir(str(cfg.export.out_dir), "export.out_dir")
    dom = load_domain(str(cfg.domain.name), cfg.domain)
    suffix = "parquet" if fmt == "verl" else "jsonl"
    targets = {split: out_dir / f"{split}.{suffix}" for split in splits}
    existing = [p for p in targets.values() if p.exists()]
    if existing and not cfg.export.overwrite:
        raise UserError(f"{existing[0]} exists; set export.overwrite=true to replace it")
    tables = {split: dom.load(cfg.domain, split=split) for split in targets}  # all checked first
    written: dict[str, Any] = {}
    for split, path in targets.items():
        tasks = tables[split]
        rates = _rates(cfg, dom, tasks, split)
        frame = pd.DataFrame(verl_rows(dom, tasks, split, rates) if fmt == "verl"
                             else trl_rows(dom, tasks, rates))
        with atomic_path(path) as tmp:
            if fmt == "verl":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        written[split] = {"path": str(path), "tasks": len(frame),
                          "pass_rates": rates is not None}
        print(f"{split}: {len(frame)} tasks -> {path} (reference pass rates: "
              f"{'yes' if rates is not None else 'none found'})")
    return written
