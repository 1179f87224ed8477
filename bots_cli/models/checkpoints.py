"""Cached model builds: written atomically, reused only when their manifest matches.

A build is a directory holding one sub-directory per checkpoint (a Hugging Face model directory:
`config.json`, weights, tokenizer files) and `manifest.json`, which records everything the weights
depend on (architecture, training settings, seed, step counts, a hash of the training data). A
build is reused only when the manifest asked for equals the one on disk; anything else rebuilds.

Writes go to a temporary sibling directory that is renamed into place at the end, so an
interrupted build never leaves a half-written directory where a reader would trust it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_build(build_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory to write a build into; on success it replaces `build_dir`.

    On an exception the temporary directory is removed and `build_dir` is left as it was.
    """
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}.tmp-", dir=build_dir.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = build_dir.with_name(f".{build_dir.name}.old-{os.getpid()}")
    if build_dir.exists():
        os.replace(build_dir, old)  # a directory cannot be replaced in one rename when non-empty
    os.replace(tmp, build_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_manifest(tmp_dir: Path, key: dict[str, Any], results: dict[str, Any]) -> None:
    """Write the manifest last: a build directory without one is never reused."""
    manifest = {"key": _canonical(key), "results": results}
    (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def build_fingerprint(build_dir: Path) -> str:
    """A short hash of a finished build's manifest key: what its weights were made from."""
    manifest = read_manifest(build_dir)
    if manifest is None:
        return "unbuilt"
    return hashlib.sha256(json.dumps(manifest["key"], sort_keys=True).encode()).hexdigest()[:12]


def _canonical(key: dict[str, Any]) -> Any:
    """`key` as it reads back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(key, sort_keys=True))
