"""Reference pass rates for a task table: from its own columns, else from profiles.

A GURU-style table that already carries reference pass rates (mapped to `weak_pass_rate` and
`strong_pass_rate` by the domain's column mapping) needs no profiling; otherwise the profiles
written by `bots profile-refs` are read and aligned to the table's task ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.errors import UserError
from bots_cli.references.profile import model_source, reference_label
from bots_cli.references.table import align_pass_rates, profile_path, read_profile


def reference_pass_rates(
    tasks: Any, domain: str, refs_cfg: Any, profiles_dir: Path, domain_cfg: Any = None,
    split: str = "train",
) -> tuple[np.ndarray, np.ndarray]:
    """(weak, strong) pass rates in the order of `tasks`, or one line saying what to run.

    A profile records where its model's weights came from; one made from other weights (e.g. a
    tiny world built since with other settings) is refused rather than silently used.
    """
    if "weak_pass_rate" in tasks.columns and "strong_pass_rate" in tasks.columns:
        return (tasks["weak_pass_rate"].to_numpy(dtype=np.float64),
                tasks["strong_pass_rate"].to_numpy(dtype=np.float64))
    fix = f"bots profile-refs domain={domain}" + ("" if split == "train" else
                                                   f" profile.split={split}")
    rates = []
    for role in ("weak", "strong"):
        path = profile_path(profiles_dir, domain, reference_label(refs_cfg[role]), split)
        if not path.is_file():
            raise UserError(f"the {role} reference has no profile for domain {domain} ({path}); "
                            f"run `{fix}` first, or map pass-rate columns of your task table")
        frame, settings = read_profile(path)
        made_from = settings.get("model_source")
        if made_from is not None:
            now = model_source(refs_cfg[role], domain_cfg)
            if made_from != now:
                raise UserError(f"the {role} profile {path} was made from {made_from}, but the "
                                f"{role} reference is now {now}; run `{fix} "
                                "profile.overwrite=true`")
        rates.append(align_pass_rates(tasks["task_id"], frame, f"the {role} profile {path}", fix))
    return rates[0], rates[1]
