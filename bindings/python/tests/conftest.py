"""Shared fixtures: the repository's shipped models and the `mint` binary."""

import os
import shutil

import numpy as np
import pytest

from mint_recipes.data import read_idx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.path.join(ROOT, "models")
MEMORIZING = os.path.join(MODELS, "fmnist-memorizing")
# The shipped model's taps, in configuration order.
SHAPES = [(16, 28, 28), (32, 14, 14), (64, 7, 7), (128, 4, 4)]


def require(what):
    """Skips without `what`, unless MINT_REQUIRE_TOOLS=1 (CI), where a missing tool fails."""
    if os.environ.get("MINT_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{what} is required (MINT_REQUIRE_TOOLS=1)")
    pytest.skip(f"{what} not available")


@pytest.fixture
def vanilla_config():
    return os.path.join(MEMORIZING, "auditor.json")


@pytest.fixture
def mint_bin():
    path = os.environ.get("MINT_BIN")
    if not path:
        for profile in ("release", "debug"):
            candidate = os.path.join(ROOT, "target", profile, "mint")
            if os.path.exists(candidate):
                path = candidate
                break
    if not path or not shutil.which(path):
        require("the mint binary (cargo build -p mint-cli, or MINT_BIN)")
    return path


def read_idx_images(path):
    """A uint8 [N, H, W] array from an IDX file (gzipped or not): the recipes' reader."""
    images = read_idx(path)
    assert images.ndim == 3, f"{path}: not an IDX image file"
    return images


def random_taps(n, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    maps = [rng.standard_normal((n, *s)).astype(dtype) for s in SHAPES]
    return maps + [rng.standard_normal((n, 10)).astype(dtype)]
