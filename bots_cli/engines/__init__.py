"""Rollout engines: generate n completions per prompt with one model (DESIGN.md §6).

`base.RolloutEngine` is the interface; `hf` (transformers `generate`, CPU or GPU) and `vllm`
(GPU, optional extra) implement it and pass one conformance suite.
"""
