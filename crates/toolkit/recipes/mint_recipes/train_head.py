"""Trains a Vanilla MINT head on extracted features and exports it to ONNX.

Driven by `mint train` (which embeds this file); runnable by hand too:

    python -m mint_recipes.train_head --members M.npy --non-members N.npy --out head.onnx \
        [--recipe standardized|paper] [--outcome-columns 240:250] [--seed 0]

Input: two float32 NPY files [n, F] of features (per-channel maxima of the tapped maps and/or
the model outcome), one per class. Output: an ONNX model with input `features` [N, F] and
output `score` [N, 1], a membership probability; and `<out>.json` with the recipe, the
training figures and a few reference rows (PyTorch's own scores) for cross-checks.

Recipes
  paper         the MINT paper's Vanilla head, literally: Dense(128, ReLU, L1 0.1 on its
                weights) -> BatchNorm -> Dropout(0.5) -> Dense(1, sigmoid); Adam 1e-3, 20 epochs,
                balanced batches of 128, binary cross-entropy.
  standardized  ours: features standardised (statistics of the training rows, folded into the
                first layer), plus label-free confidence features of the outcome (Shannon and
                Renyi-2 entropy, log-sum-exp) when --outcome-columns is given; Dense(64, ReLU)
                -> Dropout(0.2) -> Dense(1); Adam 1e-3 with weight decay 1e-4, up to 300 epochs,
                early stopping on the ROC AUC of a held-out 20% validation split (patience 30).
Needs Debian's python3-torch and python3-onnx.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mint_recipes.data import auc
from mint_recipes.fit import balanced_batches, fit


class ConfidenceFeatures(nn.Module):
    """Label-free confidence features of the outcome logits: the largest log-probability, its gap
    to the second, Shannon entropy, Renyi-2 entropy (-log sum p^2) and the log-sum-exp over the
    mean logit.

    Built from Slice, Max/Min, Exp, ReduceSum, Log and broadcast Sub/Mul only: tract 0.23 runs
    Softmax and ReduceMax through generic per-row paths (its Reduce<Max> slices the input once
    per output element), tens of times slower than these on [64, 10]; the top two are kept by
    pairwise Max/Min over the columns. Shifting by the mean logit keeps exp() in range for any
    sane model."""

    COUNT = 5

    def __init__(self, start, stop):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        logits = x[:, self.start : self.stop]
        k = self.stop - self.start
        shifted = logits - logits.sum(dim=1, keepdim=True) / k
        lse = torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
        logp = shifted - lse
        p = torch.exp(logp)
        entropy = -(p * logp).sum(dim=1, keepdim=True)
        renyi2 = -torch.log(torch.exp(2.0 * logp).sum(dim=1, keepdim=True))
        # Running top-2 over the columns (pairwise Max/Min: no ReduceMax, no TopK).
        top1, top2 = logp[:, 0:1], torch.full_like(logp[:, 0:1], -1e4)
        for i in range(1, k):
            column = logp[:, i : i + 1]
            top2 = torch.maximum(top2, torch.minimum(top1, column))
            top1 = torch.maximum(top1, column)
        return torch.cat([top1, top1 - top2, entropy, renyi2, lse], dim=1)


class StandardizedHead(nn.Module):
    def __init__(self, width, outcome, mean, std, hidden=64, dropout=0.2):
        super().__init__()
        self.confidence = ConfidenceFeatures(*outcome) if outcome else None
        extra = ConfidenceFeatures.COUNT if outcome else 0
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.mlp = nn.Sequential(nn.Linear(width + extra, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def inputs(self, x):
        z = x if self.confidence is None else torch.cat([x, self.confidence(x)], dim=1)
        return (z - self.mean) / self.std

    def forward(self, x):
        return torch.sigmoid(self.mlp(self.inputs(x)))


class PaperHead(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.dense = nn.Linear(width, 128)
        self.bn = nn.BatchNorm1d(128)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(128, 1)

    def forward(self, x):
        return torch.sigmoid(self.out(self.drop(self.bn(F.relu(self.dense(x))))))


class Deployed(nn.Module):
    """The trained head as exported: [confidence features] -> Linear -> ReLU -> Linear -> sigmoid,
    with the standardisation (or BatchNorm) folded into the linear layers, so that the ONNX graph
    has no broadcast elementwise ops on the batch (tract 0.23 runs a [N, F] - [1, F] broadcast
    through a generic element-by-element path)."""

    def __init__(self, confidence, first, second, center=None):
        super().__init__()
        self.confidence = confidence
        self.first, self.second = first, second
        self.center = center

    def forward(self, x):
        if self.confidence is not None:
            # [x, c] built as pad(x) + pad(c): tract splits a matmul fed by a Concat into one
            # matmul per part (slow for the 3 one-column parts); an Add keeps a single matmul.
            c = self.confidence(x)
            x = F.pad(x, (0, c.shape[1])) + F.pad(c, (x.shape[1], 0))
        if self.center is not None:
            x = x - self.center
        return torch.sigmoid(self.second(F.relu(self.first(x))))


# Beyond this ratio of a column's mean to its spread, folding the mean into the bias makes the
# first layer add and cancel large float32 terms (scores then move by ~1e-5): the mean is
# subtracted in the graph instead. A transformer's residual stream has such columns; channel
# maxima and logits do not, so their heads keep the folded graph.
FOLD_MEAN_LIMIT = 50.0


def linear(weight, bias):
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def deployable(model):
    """Folds standardisation (StandardizedHead) or eval-mode BatchNorm (PaperHead) away."""
    with torch.no_grad():
        if isinstance(model, StandardizedHead):
            w0, b0 = model.mlp[0].weight, model.mlp[0].bias
            w = w0 / model.std[None, :]
            second = linear(model.mlp[3].weight, model.mlp[3].bias)
            if float((model.mean.abs() / model.std).max()) > FOLD_MEAN_LIMIT:
                return Deployed(model.confidence, linear(w, b0), second, center=model.mean.clone()[None, :])
            b = b0 - (w * model.mean[None, :]).sum(dim=1)
            return Deployed(model.confidence, linear(w, b), second)
        # PaperHead: Dense -> ReLU -> BatchNorm -> (Dropout) -> Dense: BatchNorm folds into the second Dense.
        bn = model.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        w2 = model.out.weight * scale[None, :]
        b2 = model.out.bias + (model.out.weight * shift[None, :]).sum(dim=1)
        return Deployed(None, linear(model.dense.weight, model.dense.bias), linear(w2, b2))


def scores_of(model, x):
    model.eval()
    with torch.no_grad():
        return model(x).squeeze(1).numpy()


def train_paper(x, y, n_pos, args, gen):
    model = PaperHead(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_of(idx):
        p = model(x[idx]).squeeze(1)
        # Keras' L1 regulariser: 0.1 * sum(|W|) added to the mean loss.
        return F.binary_cross_entropy(p, y[idx]) + 0.1 * model.dense.weight.abs().sum()

    fit(model, opt, args.epochs or 20, lambda: balanced_batches(n_pos, len(x) - n_pos, 128, gen), loss_of)
    return model, {"epochs": args.epochs or 20}


def train_standardized(x, y, n_pos, outcome, args, gen, rng):
    # Stratified validation split for early stopping.
    pos_idx, neg_idx = rng.permutation(n_pos), rng.permutation(np.arange(n_pos, len(x)))
    n_val_pos, n_val_neg = int(len(pos_idx) * args.val_fraction), int(len(neg_idx) * args.val_fraction)
    val = np.concatenate([pos_idx[:n_val_pos], neg_idx[:n_val_neg]])
    tr_pos, tr_neg = pos_idx[n_val_pos:], neg_idx[n_val_neg:]
    tr = np.concatenate([tr_pos, tr_neg])
    probe = StandardizedHead(x.shape[1], outcome, 0.0, 1.0)
    with torch.no_grad():
        z = probe.inputs(x[tr])
    mean, std = z.mean(0), z.std(0)
    # A column whose spread is below 1e-4 of its scale (a transformer feature that barely
    # moves, say) carries nothing a float32 head can use, and standardising it would make the
    # folded first layer cancel huge terms: it gets a wide scale, so its weight is ~0. All-zero
    # columns (dead channels) keep the plain floor, as before.
    near_constant = (std < 1e-4 * (1 + mean.abs())) & ((std > 0) | (mean != 0))
    std = torch.where(near_constant, 1e4 * (1 + mean.abs()), std).clamp_min(1e-6)
    model = StandardizedHead(x.shape[1], outcome, mean, std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = x[tr], y[tr]
    best = {"auc": -1.0, "state": None, "epoch": 0}
    patience = 30

    def validate(epoch, _loss):
        s = scores_of(model, x[val])
        v = auc(s[:n_val_pos], s[n_val_pos:])
        if v > best["auc"]:
            best.update(auc=v, epoch=epoch, state={k: t.clone() for k, t in model.state_dict().items()})
            return False
        return epoch - best["epoch"] >= patience

    epochs_run = fit(
        model,
        opt,
        args.epochs or 300,
        lambda: balanced_batches(len(tr_pos), len(tr_neg), 128, gen),
        lambda idx: F.binary_cross_entropy(model(xt[idx]).squeeze(1), yt[idx]),
        after_epoch=validate,
    )
    model.load_state_dict(best["state"])
    return model, {
        "best_epoch": best["epoch"],
        "epochs_run": epochs_run,
        "validation_auc": round(best["auc"], 4),
        "validation_rows": int(len(val)),
        "train_rows": int(len(tr)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", required=True)
    ap.add_argument("--non-members", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipe", choices=["standardized", "paper"], default="standardized")
    ap.add_argument("--outcome-columns", default=None, help="START:STOP of the outcome logits among the features")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0, help="0: the recipe's default")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    args = ap.parse_args()
    started = time.time()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    pos = np.load(args.members).astype(np.float32)
    neg = np.load(args.non_members).astype(np.float32)
    assert pos.ndim == 2 and neg.ndim == 2 and pos.shape[1] == neg.shape[1], "features must be [n, F] with equal F"
    x = torch.from_numpy(np.concatenate([pos, neg]))
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    outcome = None
    if args.outcome_columns:
        a, b = (int(v) for v in args.outcome_columns.split(":"))
        assert 0 <= a < b <= x.shape[1], "--outcome-columns out of range"
        outcome = (a, b)

    if args.recipe == "paper":
        model, info = train_paper(x, y, len(pos), args, gen)
    else:
        model, info = train_standardized(x, y, len(pos), outcome, args, gen, rng)

    model.eval()
    s = scores_of(model, x)
    train_auc = auc(s[: len(pos)], s[len(pos) :])
    deployed = deployable(model).eval()
    folded_gap = float(np.abs(scores_of(deployed, x) - s).max())
    assert folded_gap < 1e-5, f"folding changed the scores by {folded_gap}"
    model = deployed
    torch.onnx.export(
        model,
        torch.zeros(2, x.shape[1]),
        args.out,
        input_names=["features"],
        output_names=["score"],
        dynamic_axes={"features": {0: "N"}, "score": {0: "N"}},
        opset_version=13,
        do_constant_folding=True,
    )
    import onnx

    onnx.checker.check_model(onnx.load(args.out))
    # A few rows (and some out-of-distribution ones) with PyTorch's scores, for cross-checks.
    ref = torch.cat([x[:4], x[-4:], x[:2] * 3.0])
    report = {
        "recipe": args.recipe,
        "seed": args.seed,
        "features": int(x.shape[1]),
        "outcome_columns": list(outcome) if outcome else None,
        "rows": {"members": int(len(pos)), "non_members": int(len(neg))},
        "training_auc": round(train_auc, 4),
        "folding_max_abs_diff": folded_gap,
        "seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
        "reference": {"inputs": ref.numpy().tolist(), "scores": scores_of(model, ref).tolist()},
    }
    report.update(info)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "reference"}))


if __name__ == "__main__":
    main()
