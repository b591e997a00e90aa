"""Trains a CNN MINT head on full activation maps and exports it to ONNX.

Driven by `mint train` when the extracted features are full maps (`mint extract --full-map`);
runnable by hand too:

    python -m mint_recipes.train_cnn_head --members M.npy --non-members N.npy --out cnn.onnx

Input: two float32 NPY files [n, C, H, W], one per class. Output: an ONNX model with input
`maps` [N, C, H, W] and output `score` [N, 1] (a membership probability), run by mint-audit's
backends (tract in the CPU plugin, Triton); and `<out>.json` with the recipe, the figures, and
reference scores of the first rows of `<out>.reference.npy`, for cross-checks.

Recipes
  paper         the MINT paper's CNN head: Conv(64 filters, kernel 5, ReLU) -> MaxPool(2) ->
                Dense(C, ReLU) -> Dropout(0.5) -> Dense(1, sigmoid); Adam 1e-3, 30 epochs,
                balanced batches of 128, binary cross-entropy.
  standardized  the same network, on maps standardised per channel (statistics of the training
                rows, folded into the convolution), with a dense layer of 64 instead of C,
                Adam 3e-4, and early stopping on the ROC AUC of a held-out 20% validation split
                (patience 8, at most 40 epochs).
Needs Debian's python3-torch and python3-onnx.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mint_recipes.data import auc
from mint_recipes.fit import balanced_batches, fit


class CnnHead(nn.Module):
    def __init__(self, c, h, w, mean=None, std=None, hidden=None):
        super().__init__()
        self.standardize = mean is not None
        self.register_buffer("mean", torch.zeros(c) if mean is None else torch.as_tensor(mean))
        self.register_buffer("std", torch.ones(c) if std is None else torch.as_tensor(std))
        self.conv = nn.Conv2d(c, 64, 5)
        flat = 64 * ((h - 4) // 2) * ((w - 4) // 2)
        hidden = hidden or c
        self.fc = nn.Linear(flat, hidden)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(hidden, 1)

    def features(self, x):
        if self.standardize:
            x = (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        return F.max_pool2d(F.relu(self.conv(x)), 2)

    def forward(self, x):
        z = torch.flatten(self.features(x), 1)
        return torch.sigmoid(self.out(self.drop(F.relu(self.fc(z)))))


def deployable(model):
    """The standardisation folded into the convolution: no broadcast ops on the batch."""
    import copy

    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        w = model.conv.weight / model.std[None, :, None, None]
        b = model.conv.bias - (w * model.mean[None, :, None, None]).sum(dim=(1, 2, 3))
        folded.conv.weight.copy_(w)
        folded.conv.bias.copy_(b)
    folded.standardize = False
    return folded


def scores_of(model, x, batch=256):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch])[:, 0] for i in range(0, len(x), batch)]).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", required=True)
    ap.add_argument("--non-members", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipe", choices=["standardized", "paper"], default="standardized")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0, help="0: the recipe's default")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    started = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    pos = torch.from_numpy(np.load(args.members).astype(np.float32))
    neg = torch.from_numpy(np.load(args.non_members).astype(np.float32))
    assert pos.ndim == 4 and pos.shape[1:] == neg.shape[1:], "maps must be [n, C, H, W] alike"
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    c, h, w = x.shape[1:]

    if args.recipe == "paper":
        tr_pos, tr_neg, val = np.arange(len(pos)), np.arange(len(pos), len(x)), None
        mean = std = None
        epochs = args.epochs or 30
    else:
        p_idx, n_idx = rng.permutation(len(pos)), rng.permutation(np.arange(len(pos), len(x)))
        nvp, nvn = len(p_idx) // 5, len(n_idx) // 5
        val = np.concatenate([p_idx[:nvp], n_idx[:nvn]])
        tr_pos, tr_neg = p_idx[nvp:], n_idx[nvn:]
        train_rows = x[np.concatenate([tr_pos, tr_neg])]
        mean = train_rows.mean(dim=(0, 2, 3))
        std = train_rows.std(dim=(0, 2, 3)).clamp_min(1e-6)
        epochs = args.epochs or 40
    if args.recipe == "paper":
        model, lr = CnnHead(c, h, w), 1e-3
    else:
        model, lr = CnnHead(c, h, w, mean, std, hidden=64), 3e-4
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = x[np.concatenate([tr_pos, tr_neg])]
    yt = y[np.concatenate([tr_pos, tr_neg])]
    best = {"auc": -1.0, "state": None, "epoch": 0}

    def validate(epoch, _loss):
        if val is None:
            return False
        s = scores_of(model, x[val])
        v = auc(s[:nvp], s[nvp:])
        if v > best["auc"]:
            best.update(auc=v, epoch=epoch, state={k: t.clone() for k, t in model.state_dict().items()})
            return False
        return epoch - best["epoch"] >= 8

    fit(
        model,
        opt,
        epochs,
        lambda: balanced_batches(len(tr_pos), len(tr_neg), 128, gen),
        lambda idx: F.binary_cross_entropy(model(xt[idx])[:, 0], yt[idx]),
        after_epoch=validate,
    )
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    deployed = deployable(model)
    ref = x[: min(4, len(pos))].clone()
    ref = torch.cat([ref, x[-4:]])
    folded_gap = float(np.abs(scores_of(deployed, ref) - scores_of(model, ref)).max())
    assert folded_gap < 1e-4, f"folding changed the scores by {folded_gap}"
    torch.onnx.export(
        deployed,
        torch.zeros(2, c, h, w),
        args.out,
        input_names=["maps"],
        output_names=["score"],
        dynamic_axes={"maps": {0: "N"}, "score": {0: "N"}},
        opset_version=13,
        do_constant_folding=True,
    )
    import onnx

    onnx.checker.check_model(onnx.load(args.out))
    np.save(args.out + ".reference.npy", ref.numpy())
    s = scores_of(deployed, x)
    report = {
        "kind": "cnn",
        "recipe": args.recipe,
        "seed": args.seed,
        "input": [int(c), int(h), int(w)],
        "rows": {"members": int(len(pos)), "non_members": int(len(neg))},
        "training_auc": round(auc(s[: len(pos)], s[len(pos) :]), 4),
        "validation_auc": round(best["auc"], 4) if val is not None else None,
        "best_epoch": best["epoch"] if val is not None else epochs,
        "folding_max_abs_diff": folded_gap,
        "seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
        "reference": {
            "maps": os.path.basename(args.out) + ".reference.npy",
            "scores": scores_of(deployed, ref).tolist(),
        },
    }
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "reference"}))


if __name__ == "__main__":
    main()
