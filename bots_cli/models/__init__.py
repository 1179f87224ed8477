"""Models: loading any Hugging Face causal LM, and the tiny world's own small model.

- `loading`: model + tokenizer from a `conf/model/*.yaml` config (a local directory, the hub
  cache, or the tiny build), device and precision, and prompt rendering with chat templates.
- `tiny`: the byte-level tokenizer, the ~1M-parameter Qwen2 and its supervised warm start.
- `build`: the cached `weak` / `strong` tiny checkpoints; `build_command`: `bots build-tiny`.
- `checkpoints`: atomic build directories with a manifest that decides when a cache is reused.

Nothing here is imported by the CLI at start-up; torch and transformers load on first use.
"""
