"""Seeds derived from a base seed and an index (a chunk, a step): independent of what ran before,
so a resumed job draws exactly what an uninterrupted one would."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, index: int, *more: int) -> int:
    """A 32-bit seed for item `index` (e.g. a step; `more`: a round within it) of a job seeded
    with `seed`."""
    return int(np.random.SeedSequence([seed, index, *more]).generate_state(1)[0])
