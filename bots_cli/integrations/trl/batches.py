"""Dynamic sampling's batch under TRL: the rows of the chosen groups, out of several rounds.

Each round is one output of TRL's `_generate_and_score_completions` on this process: a dict of
tensors whose rows are this process's contiguous share of the round's completions (task-major,
`group_size` rows a group). `merge_rounds` gathers every round's tensors from every process,
pads them to common widths (prompts on the left, completions on the right, as TRL pads), keeps
the rows of the chosen groups in order, and returns this process's share of that batch, with
`num_items_in_batch` (the loss normaliser) counted over the whole batch. Anything else in an
output (image tensors of a vision model) is refused: it has no known layout here.
"""

from __future__ import annotations

from typing import Any

import torch

from bots_cli.errors import UserError


def layout(pad_id: int, sequence_level_is: bool) -> dict[str, tuple[str, Any]]:
    """key -> (how its rows are laid out: left/right padded, one value a row, a batch total;
    the padding value)."""
    return {"prompt_ids": ("left", pad_id), "prompt_mask": ("left", 0),
            "completion_ids": ("right", pad_id), "completion_mask": ("right", 0),
            "old_per_token_logps": ("right", 0.0), "ref_per_token_logps": ("right", 0.0),
            "sampling_per_token_logps": ("right", 0.0), "tool_mask": ("right", 1),
            "importance_sampling_ratio": ("row", 0) if sequence_level_is else ("right", 1.0),
            "advantages": ("row", 0), "num_items_in_batch": ("total", 0)}


def merge_rounds(outputs: list[dict[str, Any]], groups: list[tuple[int, int]], group_size: int,
                 accelerator: Any, pad_id: int, sequence_level_is: bool) -> dict[str, Any]:
    """This process's rows of the batch made of `groups` ((round, group) pairs, in order)."""
    keys = layout(pad_id, sequence_level_is)
    unknown = sorted(set().union(*outputs) - set(keys))
    if unknown:
        raise UserError(f"dynamic sampling handles text batches only; this batch also carries "
                        f"{', '.join(unknown)}: set dynamic_sampling=False")
    P = accelerator.num_processes
    start = [0]  # where round r's rows start once the rounds are stacked (P equal shares each)
    for out in outputs[:-1]:
        start.append(start[-1] + len(out["advantages"]) * P)
    rows = torch.cat([torch.arange(j * group_size, (j + 1) * group_size) + start[r]
                      for r, j in groups])
    batch: dict[str, Any] = {}
    for key, (side, value) in keys.items():
        if key not in outputs[0] or side == "total":
            continue
        parts = []
        for out in outputs:
            t = out[key]
            if side != "row":
                t = accelerator.pad_across_processes(t, dim=1, pad_index=value,
                                                     pad_first=side == "left")
            parts.append(accelerator.gather(t) if P > 1 else t)
        if side != "row":
            width = max(t.size(1) for t in parts)
            parts = [pad_to(t, width, value, left=side == "left") for t in parts]
        stacked = torch.cat(parts)
        batch[key] = stacked[rows.to(stacked.device)]
    loss_mask = batch["completion_mask"]
    if "tool_mask" in batch:
        loss_mask = loss_mask * batch["tool_mask"]
    share = len(groups) * group_size // P
    mine = slice(accelerator.process_index * share, (accelerator.process_index + 1) * share)
    out = {key: t[mine] for key, t in batch.items()}
    out["num_items_in_batch"] = loss_mask.sum().to(outputs[0]["num_items_in_batch"].device)
    # Left padding none of this process's prompts needs is cut, as in TRL's own batches (the
    # model numbers positions from the first column).
    used = int(out["prompt_mask"].sum(dim=1).max())
    for key in ("prompt_ids", "prompt_mask"):
        out[key] = out[key][:, out[key].size(1) - used:]
    return out


def pad_to(t: torch.Tensor, width: int, value: Any, *, left: bool) -> torch.Tensor:
    """`t` (rows, w) padded with `value` to (rows, width), on the left or the right."""
    extra = width - t.size(1)
    if extra <= 0:
        return t
    pad = torch.full((t.size(0), extra, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)
