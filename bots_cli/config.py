"""Where the Hydra configs live, and a selector's config composed outside a command.

Every layer that needs `conf/` (domains, models, runs, the verl sampler, benchmarks) asks here,
so no lower layer imports the command launcher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots_cli.errors import UserError


def config_dir() -> Path:
    """The Hydra config directory: conf/, shipped in the package as bots_cli/conf."""
    return Path(__file__).resolve().parent / "conf"


def compose_selector(name: str, overrides: dict[str, Any] | None = None,
                     lam: float | None = None) -> dict[str, Any]:
    """conf/selector/<name>.yaml as Hydra composes it (its defaults list included: mopps extends
    bots, every selector has `success`), λ resolved (`lam`, else the root default), with
    `overrides` merged on top: a selector config outside a command (verl, benchmarks, tests)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    path = config_dir() / "selector" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise UserError(f"no selector {name!r} (known: {known})")
    root = [] if lam is None else [f"lambda={lam}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        composed = compose(config_name="simulate", overrides=[f"selector={name}", *root])
    merged = OmegaConf.merge(OmegaConf.to_container(composed.selector, resolve=True),
                             overrides or {})
    out = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}
