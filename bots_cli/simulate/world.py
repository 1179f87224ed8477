"""The synthetic world of `bots simulate`: tasks, a learner, and two reference models.

Assumptions (also in docs/simulator.md):
- Each task k exercises one skill j_k and has a difficulty d_k. The learner solves it with the
  item-response probability p_k = sigmoid(a · (theta_{j_k} + u_k − d_k)), where theta is the
  learner's per-skill ability and u_k what it has memorised of task k.
- A step's rollouts are independent Bernoulli(p_k) draws; the learning signal of a group is the
  standard deviation of its rewards, zero when they are all equal, as for GRPO's normalised
  advantages.
- Learning: every skill gains `learning_rate` times the batch-mean signal on its own tasks plus
  `transfer` times the batch-mean signal on the others; each task's memory u_k gains
  `memorization` times its own signal. Memorisation does not carry over to held-out tasks.
- The weak and strong references are learners of fixed ability with task-level noise on the logit
  (they are imperfect proxies of the policy), profiled with a finite number of rollouts.
- Held-out accuracy is the exact expected success over fresh tasks (no sampling noise).
- Knobs that tell the selection core's extensions apart (DESIGN.md §1.5): `reference_shuffle`
  exchanges the (weak, strong) pass rates of a share of tasks among themselves (misordered
  references; 1 = shuffled across the pool), `references: false` gives no reference at all,
  `drift_step`/`drift_factor` change the learner's learning rate mid-run, and every task has a
  `level` (its difficulty, binned with label noise) and an `embedding` (a noisy view of its skill
  and difficulty) for the groups and knn plug-ins; `skill` is a column too.
- Late feedback (DESIGN.md §1.8): with `feedback_delay` = k the selector receives the outcomes of
  the batch of step t only after it selected the batch of step t+k, as in asynchronous RL, so k
  batches are in flight at every selection. The learner is not delayed: each batch's rollouts
  are drawn from, and trained into, the learner of its own step. Only the selector's view lags.
What it cannot show: anything about language, reward hacking, the cost of rollouts of different
lengths, or selectors that read task content; its numbers are for comparing selectors, not models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bots_cli.checks import check_int, check_range


@dataclass(frozen=True)
class WorldParams:
    """The `world` config section (values and their meaning live in conf/simulate.yaml)."""

    n_tasks: int
    n_eval: int
    n_skills: int
    difficulty_mean: float
    difficulty_std: float
    discrimination: float
    learning_rate: float
    transfer: float
    memorization: float
    weak_ability: float
    strong_ability: float
    reference_noise: float
    profile_rollouts: int
    reference_shuffle: float
    references: bool
    drift_step: int | None
    drift_factor: float
    n_levels: int
    level_noise: float
    embedding_noise: float
    feedback_delay: int

    @classmethod
    def from_config(cls, cfg: Any) -> WorldParams:
        """Validate the `world` section; errors name the key (world.n_tasks must be ≥ 1, ...)."""

        def num(key: str, lo: float | None = None, lo_open: bool = False) -> float:
            return check_range(f"world.{key}", cfg[key], lo, lo_open=lo_open)

        def integer(key: str, lo: int) -> int:
            return check_int(f"world.{key}", cfg[key], lo=lo)

        return cls(
            n_tasks=integer("n_tasks", 1),
            n_eval=integer("n_eval", 1),
            n_skills=integer("n_skills", 1),
            difficulty_mean=num("difficulty_mean"),
            difficulty_std=num("difficulty_std", 0.0),
            discrimination=num("discrimination", 0.0, lo_open=True),
            learning_rate=num("learning_rate", 0.0),
            transfer=check_range("world.transfer", cfg["transfer"], 0.0, 1.0),
            memorization=num("memorization", 0.0),
            weak_ability=num("weak_ability"),
            strong_ability=num("strong_ability"),
            reference_noise=num("reference_noise", 0.0),
            profile_rollouts=integer("profile_rollouts", 1),
            reference_shuffle=check_range("world.reference_shuffle", cfg["reference_shuffle"],
                                          0.0, 1.0),
            references=bool(cfg["references"]),
            drift_step=None if cfg["drift_step"] is None else integer("drift_step", 1),
            drift_factor=num("drift_factor", 0.0),
            n_levels=integer("n_levels", 1),
            level_noise=num("level_noise", 0.0),
            embedding_noise=num("embedding_noise", 0.0),
            feedback_delay=integer("feedback_delay", 0),
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class World:
    params: WorldParams
    skill: np.ndarray  # (N,) skill of each training task
    difficulty: np.ndarray  # (N,)
    eval_skill: np.ndarray  # (N_eval,)
    eval_difficulty: np.ndarray  # (N_eval,)
    weak: np.ndarray | None  # (N,) profiled pass rates of the weak reference (None: no refs)
    strong: np.ndarray | None  # (N,) profiled pass rates of the strong reference
    level: np.ndarray  # (N,) 1..n_levels: difficulty quantile of a noisy copy of the difficulty
    embedding: np.ndarray  # (N, n_skills + 1): skill one-hot and standardised difficulty, noisy

    @property
    def columns(self) -> dict[str, Any]:
        """The task table the groups and knn plug-ins read: `skill`, `level`, `embedding`."""
        return {"skill": self.skill, "level": self.level, "embedding": list(self.embedding)}

    @classmethod
    def generate(cls, params: WorldParams, seed: int) -> World:
        rng = np.random.default_rng([seed, 0xB075])
        n, ne = params.n_tasks, params.n_eval
        skill = rng.integers(0, params.n_skills, n)
        difficulty = rng.normal(params.difficulty_mean, params.difficulty_std, n)
        eval_skill = rng.integers(0, params.n_skills, ne)
        eval_difficulty = rng.normal(params.difficulty_mean, params.difficulty_std, ne)

        def profile(ability: float) -> np.ndarray:
            noise = rng.normal(0.0, params.reference_noise, n)
            p = _sigmoid(params.discrimination * (ability + noise - difficulty))
            return rng.binomial(params.profile_rollouts, p) / params.profile_rollouts

        weak, strong = profile(params.weak_ability), profile(params.strong_ability)
        # Misordered references: a share of tasks trade their (weak, strong) pair at random.
        moved = np.flatnonzero(rng.random(n) < params.reference_shuffle)
        to = rng.permutation(moved)
        weak[moved], strong[moved] = weak[to], strong[to]
        noisy = difficulty + rng.normal(0.0, params.level_noise, n)
        edges = np.quantile(noisy, np.linspace(0, 1, params.n_levels + 1)[1:-1])
        level = np.searchsorted(edges, noisy) + 1
        std = params.difficulty_std or 1.0
        features = np.column_stack([np.eye(params.n_skills)[skill],
                                    (difficulty - params.difficulty_mean) / std])
        embedding = features + rng.normal(0.0, params.embedding_noise, features.shape)
        refs = params.references
        return cls(params, skill, difficulty, eval_skill, eval_difficulty,
                   weak=weak if refs else None, strong=strong if refs else None, level=level,
                   embedding=embedding)


@dataclass
class Learner:
    ability: np.ndarray  # (n_skills,) theta
    memory: np.ndarray  # (N,) u, what has been memorised of each training task

    @classmethod
    def start(cls, world: World) -> Learner:
        return cls(np.zeros(world.params.n_skills), np.zeros(world.params.n_tasks))

    def success_prob(self, world: World, ids: np.ndarray) -> np.ndarray:
        logit = self.ability[world.skill[ids]] + self.memory[ids] - world.difficulty[ids]
        return _sigmoid(world.params.discrimination * logit)

    def heldout_accuracy(self, world: World) -> float:
        logit = self.ability[world.eval_skill] - world.eval_difficulty
        return float(np.mean(_sigmoid(world.params.discrimination * logit)))

    def learn(self, world: World, ids: np.ndarray, rewards: np.ndarray, step: int = 0) -> None:
        """Improve from step `step`'s groups; `rewards` is (B, G) in {0, 1}. From
        `drift_step` on, the learning rate is `drift_factor` times larger (drift)."""
        p = world.params
        signal = rewards.std(axis=1)  # (B,) zero for all-equal groups
        own = np.bincount(world.skill[ids], weights=signal, minlength=p.n_skills) / len(ids)
        others = signal.sum() / len(ids) - own
        rate = p.learning_rate * (p.drift_factor if p.drift_step is not None
                                  and step >= p.drift_step else 1.0)
        self.ability += rate * (own + p.transfer * others)
        self.memory[ids] += p.memorization * signal
