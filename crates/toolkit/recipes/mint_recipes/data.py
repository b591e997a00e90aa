"""Shared data helpers for the reference recipes (Debian's python3-numpy only): the data sets,
image hashes, and the ROC AUC the recipes select and report with.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package (IDX files, gzip'd);
the cross-dataset non-members come from Debian's `python3-sklearn` (the UCI optical digits
bundled with scikit-learn, 8x8, upsampled to 28x28).
"""

import gzip
import hashlib
import os

import numpy as np

FASHION_DIR = os.environ.get("MINT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def read_idx(path):
    """Reads an IDX file (optionally gzip'd) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    assert zero == b"\x00\x00" and dtype_code == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split):
    """(images uint8 [N, 28, 28], labels uint8 [N]) for split 'train' or 't10k'."""
    images = read_idx(os.path.join(FASHION_DIR, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(FASHION_DIR, f"{split}-labels-idx1-ubyte.gz"))
    return images, labels


def digits28():
    """scikit-learn's bundled optical digits, upsampled to 28x28 uint8 (bilinear), as
    (images [1797, 28, 28], labels [1797])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    src = d.images.astype(np.float64) / 16.0  # [N, 8, 8] in [0, 1]
    # Bilinear resize 8 -> 28 with align_corners=False semantics, done by hand to avoid
    # another dependency: sample positions in source pixel coordinates.
    pos = (np.arange(28) + 0.5) * 8 / 28 - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, 7)
    hi = np.clip(lo + 1, 0, 7)
    frac = np.clip(pos - lo, 0, 1)
    rows = src[:, lo, :] * (1 - frac)[None, :, None] + src[:, hi, :] * frac[None, :, None]
    out = rows[:, :, lo] * (1 - frac)[None, None, :] + rows[:, :, hi] * frac[None, None, :]
    return np.round(out * 255).astype(np.uint8), d.target.astype(np.uint8)


def image_hashes(images):
    return [hashlib.sha1(img.tobytes()).hexdigest() for img in images]


def write_npy(path, array):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    np.save(path, array)


def auc(pos, neg):
    """ROC AUC of scores where higher means 'member' (Mann-Whitney, ties counted half)."""
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
