"""The build backend's choice of Cargo target directory (build_backend/mint_target_dir.py): a pip
install from a fresh clone builds outside the checkout, one from a checkout with a build of the
same profile reuses it, and the caller's CARGO_TARGET_DIR wins."""

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACKAGE / "build_backend"))

from mint_target_dir import choose_target_dir, workspace_root  # noqa: E402


def checkout(tmp_path: Path, built: list[str]) -> Path:
    """A workspace laid out as this repository is, with Cargo builds of the given profile folders."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Cargo.toml").write_text('[workspace]\nmembers = ["bindings/python"]\n')
    package = tmp_path / "bindings" / "python"
    package.mkdir(parents=True)
    for profile_dir in built:
        (tmp_path / "target" / profile_dir / "deps").mkdir(parents=True)
    return package


def test_a_fresh_clone_builds_outside_the_checkout(tmp_path: Path) -> None:
    package = checkout(tmp_path / "src", [])
    target, _ = choose_target_dir(package, {"HOME": str(tmp_path / "home")})
    assert target == tmp_path / "home" / ".cache" / "mint-audit" / "cargo-target"
    assert not target.is_relative_to(tmp_path / "src")
    target, _ = choose_target_dir(package, {"HOME": "/nowhere", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert target == tmp_path / "cache" / "mint-audit" / "cargo-target"


def test_a_build_of_the_same_profile_is_reused(tmp_path: Path) -> None:
    package = checkout(tmp_path, ["release"])
    target, why = choose_target_dir(package, {"HOME": "/nowhere"})
    assert target == tmp_path / "target" and "reusing" in why
    # A debug build is not a release build: the dev profile must find target/debug.
    target, _ = choose_target_dir(package, {"HOME": "/nowhere", "MATURIN_PEP517_ARGS": "--profile dev"})
    assert target == Path("/nowhere/.cache/mint-audit/cargo-target")
    package = checkout(tmp_path / "dev", ["debug"])
    for args in ("--profile dev", "--profile=dev"):
        target, _ = choose_target_dir(package, {"HOME": "/nowhere", "MATURIN_PEP517_ARGS": args})
        assert target == tmp_path / "dev" / "target"


def test_the_callers_target_dir_wins(tmp_path: Path) -> None:
    package = checkout(tmp_path, ["release"])
    target, why = choose_target_dir(package, {"CARGO_TARGET_DIR": "/elsewhere"})
    assert target is None and "CARGO_TARGET_DIR" in why


def test_outside_a_workspace_the_cache_is_used(tmp_path: Path) -> None:
    package = tmp_path / "mint_audit-0.1.0"  # an unpacked source distribution
    package.mkdir()
    target, _ = choose_target_dir(package, {"HOME": str(tmp_path)})
    assert target == tmp_path / ".cache" / "mint-audit" / "cargo-target"


def test_this_checkout_is_a_workspace() -> None:
    # The rule above reads the layout; a move of the package would silently stop the reuse.
    assert workspace_root(PACKAGE) == PACKAGE.parents[1]
