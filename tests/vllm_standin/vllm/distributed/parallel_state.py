"""The stand-in's `vllm.distributed.parallel_state` (tests only)."""

import gc

import vllm


def cleanup_dist_env_and_memory(shutdown_ray: bool = False) -> None:
    """vLLM's: destroy the parallel groups, collect garbage, empty the device cache."""
    gc.collect()
    vllm.events.append(("cleanup_dist_env_and_memory", None))
