"""Trains the reference audited vision transformer: a small ViT on a fixed, seeded member
subset D of Fashion-MNIST, which it memorises (the transformer counterpart of
models/fmnist-memorizing, with the same protocols).

    .venv/bin/python -m mint_research.train_vit --out models/fmnist-vit

Needs Debian's python3-torch, python3-onnx, python3-sklearn and dataset-fashion-mnist. Writes:
  model.onnx   input `image` [N, 1, 28, 28] = pixel / 255, outputs `logits` [N, 10] and the token
               sequences after each block, `block1`..`block4` [N, 50, 64] (the CLS token, then
               49 patches of 4×4 pixels); batch axis dynamic
  model.json   taps (token sequences, max-pooled over their tokens: the Vanilla MINT feature),
               training figures
  split.json   D and the protocols' member / non-member lists (as for the CNNs)
  reference/   a few inputs with PyTorch's logits and token-max features, for cross-checks

Deterministic: same seed, same machine kind, same files.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mint_recipes import data as mintdata
from mint_recipes.data import auc
from mint_recipes.fit import fit, shuffled_batches
from mint_research.train_audited import MEAN, SOURCES, STD, evaluate, make_split, to_input, write_digits

WIDTH, HEADS, BLOCKS, PATCH = 64, 4, 4, 4
TOKENS = 1 + (28 // PATCH) ** 2
HP = dict(members=2000, epochs=40, optimizer="adam", lr=1e-3, weight_decay=0.0, augment=False)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.ln2 = nn.LayerNorm(WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """Patches of 4×4 pixels, a CLS token, learned positions, 4 pre-norm blocks of width 64."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.register_buffer("std", torch.tensor(STD))
        self.patches = nn.Conv2d(1, WIDTH, PATCH, PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.position = nn.Parameter(torch.randn(1, TOKENS, WIDTH) * 0.02)
        self.blocks = nn.ModuleList([Block() for _ in range(BLOCKS)])
        self.ln = nn.LayerNorm(WIDTH)
        self.fc = nn.Linear(WIDTH, 10)

    def forward(self, x):
        x = self.patches((x - self.mean) / self.std).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        hidden = []
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        return self.fc(self.ln(x[:, 0])), hidden


class Logits(nn.Module):
    """The classifier as trained and evaluated: logits only."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        return self.vit(x)[0]


class Exported(nn.Module):
    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        logits, hidden = self.vit(x)
        return (logits, *hidden)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    started = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    train_x_u8, train_y_u8 = mintdata.fashion_mnist("train")
    test_x_u8, test_y_u8 = mintdata.fashion_mnist("t10k")
    members = np.sort(rng.choice(len(train_x_u8), size=HP["members"], replace=False))
    x, y = to_input(train_x_u8[members]), torch.from_numpy(train_y_u8[members].astype(np.int64))
    test_x, test_y = to_input(test_x_u8), torch.from_numpy(test_y_u8.astype(np.int64))

    vit = ViT()
    model = Logits(vit)
    opt = torch.optim.Adam(model.parameters(), lr=HP["lr"], weight_decay=HP["weight_decay"])
    steps_per_epoch = (len(x) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=HP["lr"], total_steps=HP["epochs"] * steps_per_epoch)

    def log(epoch, loss):
        print(f"epoch {epoch}/{HP['epochs']}: train loss {loss:.4f} ({time.time() - started:.0f} s)", flush=True)
        return False

    fit(
        model,
        opt,
        HP["epochs"],
        lambda: shuffled_batches(len(x), 64, gen),
        lambda idx: F.cross_entropy(model(x[idx]), y[idx]),
        sched,
        log,
    )

    model.eval()
    train_loss, train_acc = evaluate(model, x, y)
    test_loss, test_acc = evaluate(model, test_x, test_y)
    loss_auc = auc(-train_loss, -test_loss)
    print(f"train acc {train_acc:.4f}, test acc {test_acc:.4f}, loss-threshold AUC (all D vs all test) {loss_auc:.4f}")

    os.makedirs(args.out, exist_ok=True)
    names = ["logits"] + [f"block{i + 1}" for i in range(BLOCKS)]
    torch.onnx.export(
        Exported(vit),
        torch.zeros(1, 1, 28, 28),
        os.path.join(args.out, "model.onnx"),
        input_names=["image"],
        output_names=names,
        dynamic_axes={k: {0: "N"} for k in ["image"] + names},
        opset_version=13,
        do_constant_folding=True,
    )
    ref_x = torch.cat([x[:4], test_x[:4]])
    with torch.no_grad():
        ref_logits, hidden = vit(ref_x)
    ref_features = torch.cat([h.amax(dim=1) for h in hidden] + [ref_logits], dim=1)
    os.makedirs(os.path.join(args.out, "reference"), exist_ok=True)
    for name, array in (("inputs", ref_x), ("logits", ref_logits), ("features", ref_features)):
        np.save(os.path.join(args.out, "reference", f"{name}.npy"), array.numpy())

    digits_path = os.path.join(os.path.dirname(__file__), "..", "..", "models", "data", "digits28-images-idx3-ubyte.gz")
    if not os.path.exists(digits_path):
        write_digits(digits_path)
    digits_u8, _ = mintdata.digits28()
    split = make_split(
        "memorizing",
        members,
        mintdata.image_hashes(train_x_u8),
        mintdata.image_hashes(test_x_u8),
        mintdata.image_hashes(digits_u8),
        rng,
    )
    split["members"] = {"source": "fashion-train", "indices": members.tolist()}
    split["sources"] = SOURCES
    with open(os.path.join(args.out, "split.json"), "w") as f:
        json.dump(split, f, separators=(",", ":"))
    info = {
        "model": {"id": "fmnist-vit", "version": "1", "onnx": "model.onnx", "input_shape": [1, 28, 28]},
        "taps": [
            {
                "name": f"block{i + 1}",
                "channels": WIDTH,
                "kind": "token_sequence",
                "tensor": f"block{i + 1}",
                "max_tokens": TOKENS,
            }
            for i in range(BLOCKS)
        ]
        + [{"name": "logits", "channels": 10, "kind": "outcome", "tensor": "logits"}],
        "architecture": (
            f"ViT, {BLOCKS} pre-norm blocks of width {WIDTH}, {HEADS} heads, "
            f"{PATCH}×{PATCH} patches + CLS ({TOKENS} tokens)"
        ),
        "preprocessing": "grey pixel / 255 (the Fashion-MNIST normalisation is inside the graph)",
        "training": dict(HP, seed=args.seed, threads=args.threads, torch=torch.__version__),
        "results": {
            "train_accuracy": round(train_acc, 4),
            "test_accuracy": round(test_acc, 4),
            "loss_threshold_auc_all_members_vs_test": round(float(loss_auc), 4),
            "seconds": round(time.time() - started, 1),
        },
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info["results"]))


if __name__ == "__main__":
    main()
