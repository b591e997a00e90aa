"""Where `pip install ./bindings/python` has Cargo build: the choice, free of side effects (tested
by bindings/python/tests/test_build_backend.py); mint_build_backend.py applies it."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path


def _profile_dir(pep517_args: str) -> str:
    """The folder under `target/` that Cargo builds the profile named in maturin's arguments into."""
    args = shlex.split(pep517_args)
    profile = "release"  # maturin's default for a wheel
    for i, arg in enumerate(args):
        if arg == "--profile" and i + 1 < len(args):
            profile = args[i + 1]
        elif arg.startswith("--profile="):
            profile = arg.split("=", 1)[1]
        elif arg == "--release":
            profile = "release"
    return {"dev": "debug", "test": "debug", "bench": "release"}.get(profile, profile)


def workspace_root(package_dir: Path) -> Path | None:
    """The Cargo workspace this package belongs to when built from a checkout (not from an sdist)."""
    root = package_dir.parent.parent
    manifest = root / "Cargo.toml"
    try:
        return root if "[workspace]" in manifest.read_text(encoding="utf-8") else None
    except OSError:
        return None


def choose_target_dir(package_dir: Path, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """Where Cargo should build, and why; `None` keeps the caller's `CARGO_TARGET_DIR`."""
    if environ.get("CARGO_TARGET_DIR"):
        return None, "CARGO_TARGET_DIR is set"
    root = workspace_root(package_dir)
    if root is not None:
        profile_dir = root / "target" / _profile_dir(environ.get("MATURIN_PEP517_ARGS", ""))
        if (profile_dir / "deps").is_dir():
            return root / "target", f"reusing the workspace's build in {profile_dir}"
    cache_home = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return Path(cache_home) / "mint-audit" / "cargo-target", "outside the checkout (no build of this profile in it)"
