"""Which verl the integration is tested with, checked before anything of verl's is used."""

from __future__ import annotations

from bots_cli.errors import UserError

SUPPORTED_VERL = (">=0.9.1,<0.10", ">=0.7.1,<0.8")  # tested: 0.9.1 (trainer), 0.7.1 (sampler)


class UnsupportedVersion(UserError, ImportError):
    """The installed verl is outside the tested range."""


def check_verl_version(version: str | None = None) -> str:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    if version is None:
        try:
            import verl
        except ImportError:
            raise UnsupportedVersion("verl is not installed: pip install 'bots-cli[verl]'") \
                from None
        version = str(verl.__version__)
    if not any(Version(version) in SpecifierSet(r) for r in SUPPORTED_VERL):
        raise UnsupportedVersion(f"verl {version} is installed, but BOTS' verl integration is "
                                 f"tested with verl{SUPPORTED_VERL[0]} (and its sampler with "
                                 f"verl{SUPPORTED_VERL[1]}): pip install 'verl==0.9.1'")
    return version
