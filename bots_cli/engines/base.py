"""The `RolloutEngine` interface shared by training, profiling and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bots_cli.checks import check_int, check_range
from bots_cli.errors import InvalidValue


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled; the same settings for profiling, training and evaluation."""

    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass; 1 = off (top-k is always off)
    max_new_tokens: int = 32  # tokens generated at most per completion
    stop: tuple[str, ...] = ()  # strings that end a completion (not included in its text)
    seed: int = 0  # generation is reproducible for the same prompts, n and seed

    def __post_init__(self) -> None:
        check_range("sampling.temperature", self.temperature, 0.0)
        check_range("sampling.top_p", self.top_p, 0.0, 1.0, lo_open=True)
        check_int("sampling.max_new_tokens", self.max_new_tokens, lo=1)
        check_int("sampling.seed", self.seed, lo=0)
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidValue(f"sampling.stop must be a list of non-empty strings, got "
                               f"{self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # lists from YAML become tuples

    @classmethod
    def from_config(cls, cfg: Any) -> SamplingParams:
        """From a config section with these field names (a missing field keeps its default)."""
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        if "stop" in known and known["stop"] is not None:
            known["stop"] = tuple(known["stop"])
        elif "stop" in known:
            known["stop"] = ()
        return cls(**known)


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

    def sleep(self) -> None:  # noqa: B027 - only engines with memory of their own free it
        """Free accelerator memory for a training step (colocated engines); no-op by default."""

    def wake_up(self) -> None:  # noqa: B027 - the counterpart of `sleep`
        """Take back what `sleep` freed; `generate` also does this when it has to."""

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
