"""Cached model builds: written atomically, reused only when their manifest matches.

A build is a directory holding one sub-directory per checkpoint (a Hugging Face model directory:
`config.json`, weights, tokenizer files) and `manifest.json`, whose key records everything the
weights depend on (architecture, training settings, seed, step counts, the recipe or a hash of
the training data). A build is reused only when the key asked for equals the one on disk;
anything else rebuilds.

Builds are written with `bots_cli.atomic.atomic_dir`, so an interrupted build never leaves a
half-written directory where a reader would trust it. A build's fingerprint is a hash of its
weights, so whatever was measured on a build (reference profiles) stays tied to those weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def hash_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """SHA-256 of the training pairs, order included (the batch order depends on it)."""
    h = hashlib.sha256()
    for prompt, answer in pairs:
        for part in (prompt, answer):
            data = part.encode()
            h.update(len(data).to_bytes(8, "little"))  # length prefix: no ambiguous joins
            h.update(data)
    return h.hexdigest()


def read_manifest(build_dir: Path) -> dict[str, Any] | None:
    """The manifest of a finished build, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((build_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def matching_build(build_dir: Path, key: dict[str, Any], checkpoints: Iterable[str]) -> bool:
    """Whether `build_dir` holds a finished build made from exactly `key`."""
    manifest = read_manifest(build_dir)
    if manifest is None or manifest.get("key") != _canonical(key):
        return False
    return all((build_dir / name / "config.json").is_file() for name in checkpoints)


def write_manifest(tmp_dir: Path, key: dict[str, Any], results: dict[str, Any]) -> None:
    """Write the manifest last: a build directory without one is never reused."""
    manifest = {"key": _canonical(key), "results": results}
    (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(build_dir: Path, checkpoints: Iterable[str]) -> dict[str, str]:
    """SHA-256 of each checkpoint's `model.safetensors`."""
    return {name: file_sha256(Path(build_dir) / name / "model.safetensors")
            for name in checkpoints}


def build_fingerprint(build_dir: Path) -> str:
    """A short hash of a finished build's weights (every checkpoint's safetensors, by name): a
    rebuild that is bit-for-bit the same keeps it, other weights never share it."""
    if read_manifest(build_dir) is None:
        return "unbuilt"
    names = sorted(p.parent.name for p in Path(build_dir).glob("*/model.safetensors"))
    listing = "".join(f"{n} {h}\n" for n, h in weights_sha256(build_dir, names).items())
    return hashlib.sha256(listing.encode()).hexdigest()[:12]


def _canonical(key: dict[str, Any]) -> Any:
    """`key` as it reads back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(key, sort_keys=True))
