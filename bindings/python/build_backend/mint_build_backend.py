"""The package's PEP 517 build backend: maturin's, with Cargo's target directory chosen so that
`pip install ./bindings/python` leaves nothing in the checkout and reuses a build that is there.

Left to itself maturin builds into the Cargo workspace's `target/`, which for this package is
the checkout's: a user's `pip install` from a fresh clone would leave about 650 MB inside their
source tree and rebuild every dependency next time. The directory is chosen, in order:

1. `CARGO_TARGET_DIR`, when the caller sets it (respected as Cargo does);
2. the workspace's own `target/`, when a build of the same profile is already there (a
   `cargo build --release` of the checkout, or scripts/test.sh's debug build for the dev
   profile `scripts/python_tests.sh` asks for): its compiled dependencies are reused;
3. otherwise a cache outside the checkout, `$XDG_CACHE_HOME/mint-audit/cargo-target`
   (`~/.cache/...`), kept so that reinstalling takes seconds; delete it to reclaim the space.

The choice is printed to stderr (pip shows it with `-v`). Everything else is maturin's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from maturin import (
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)
from mint_target_dir import choose_target_dir

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_wheel",
]


def _configure() -> None:
    # pip runs each hook in a fresh process with the package's folder as its working directory;
    # maturin runs Cargo as a child that inherits this environment.
    target, why = choose_target_dir(Path.cwd(), os.environ)
    if target is not None:
        os.environ["CARGO_TARGET_DIR"] = str(target)
    print(f"mint-audit build: Cargo target {os.environ.get('CARGO_TARGET_DIR')} ({why})", file=sys.stderr)


_configure()
