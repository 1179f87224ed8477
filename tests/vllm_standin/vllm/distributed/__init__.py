"""The stand-in's `vllm.distributed` (tests only)."""
