"""Writes the demo's known members and non-members (uncompressed IDX, readable from C).

    .venv/bin/python -m mint_research.demo_samples models/fmnist-memorizing [--count 500]

Takes the first COUNT members of the split's same-distribution `eval` set (members of D the
shipped head never saw in training), and COUNT non-members from the *check* part of its eval
non-members: Fashion-MNIST test images that neither head training nor calibration saw (the
seeded split of `mint eval --calibrate`, seed 0, half), so that the demo measures the
calibrated FPR on non-members calibration never used.
"""

import argparse
import json
import os

import numpy as np

from mint_recipes import data as mintdata


def write_idx(path, images):
    header = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    with open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


MASK = (1 << 64) - 1


class SplitMix:
    """crates/toolkit/src/roc.rs's SplitMix64, to the bit."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def shuffle(self, v):
        for i in range(len(v) - 1, 0, -1):
            j = self.next() % (i + 1)
            v[i], v[j] = v[j], v[i]


def check_part(n, fraction=0.5, seed=0):
    """Positions of the check part, as crates/toolkit/src/calibrate.rs's `parts` splits n non-members."""
    order = list(range(n))
    SplitMix(seed ^ 0xCA11B7A7E5EED000).shuffle(order)
    k = min(n, int(n * fraction + 0.5))
    return sorted(order[k:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--count", type=int, default=500)
    args = ap.parse_args()
    split = json.load(open(os.path.join(args.model_dir, "split.json")))
    ev = split["protocols"]["same_distribution"]["eval"]
    sources = {"fashion-train": mintdata.fashion_mnist("train")[0], "fashion-t10k": mintdata.fashion_mnist("t10k")[0]}
    check = check_part(len(ev["non_members"]["indices"]))
    picks = {
        "members": ev["members"]["indices"][: args.count],
        "non-members": [ev["non_members"]["indices"][i] for i in check[: args.count]],
    }
    for name, subset in (("members", ev["members"]), ("non-members", ev["non_members"])):
        images = sources[subset["source"]][picks[name]]
        write_idx(os.path.join(args.model_dir, f"demo-{name}-idx3-ubyte"), images)
        print(name, images.shape)


if __name__ == "__main__":
    main()
