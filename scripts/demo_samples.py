#!/usr/bin/python3
"""Writes the demo's known members and non-members (uncompressed IDX, readable from C).

    /usr/bin/python3 scripts/demo_samples.py models/fmnist-memorizing [--count 500]

Takes the first COUNT members and non-members of the split's same-distribution `eval` sets:
samples the shipped head never saw in training, members of D and Fashion-MNIST test images.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mintdata  # noqa: E402


def write_idx(path, images):
    header = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    with open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--count", type=int, default=500)
    args = ap.parse_args()
    split = json.load(open(os.path.join(args.model_dir, "split.json")))
    ev = split["protocols"]["same_distribution"]["eval"]
    sources = {"fashion-train": mintdata.fashion_mnist("train")[0], "fashion-t10k": mintdata.fashion_mnist("t10k")[0]}
    for name, subset in (("members", ev["members"]), ("non-members", ev["non_members"])):
        images = sources[subset["source"]][subset["indices"][: args.count]]
        write_idx(os.path.join(args.model_dir, f"demo-{name}-idx3-ubyte"), images)
        print(name, images.shape)


if __name__ == "__main__":
    main()
