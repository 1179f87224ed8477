"""The `RolloutEngine` interface shared by training, profiling and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled; the same settings for profiling, training and evaluation."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass; 1 = off (top-k is always off)
    max_new_tokens: int = 32  # tokens generated at most per completion
    stop: tuple[str, ...] = ()  # strings that end a completion (not included in its text)
    seed: int = 0  # generation is reproducible for the same prompts, n and seed


@dataclass(frozen=True)
class Completion:
    text: str  # the generated text, cut before a stop string
    token_ids: tuple[int, ...]  # the generated tokens (up to and including the stop/EOS token)
    finish_reason: Literal["stop", "length"]  # "stop": EOS or a stop string; "length": budget


class RolloutEngine(ABC):
    """Generates completions for already rendered prompt strings."""

    @abstractmethod
    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """For each prompt, `n` completions, in prompt order."""

    @abstractmethod
    def load_weights(self, model: Any) -> None:
        """Make the engine generate with `model`'s current weights (after a training update)."""

    def close(self) -> None:  # noqa: B027 - engines holding GPU memory release it here
        """Release the engine's resources; it cannot generate afterwards."""

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
