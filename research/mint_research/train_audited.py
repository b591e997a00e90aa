"""Trains the reference audited models on a fixed, seeded member subset D of Fashion-MNIST.

    .venv/bin/python -m mint_research.train_audited --variant memorizing  --out models/fmnist-memorizing
    .venv/bin/python -m mint_research.train_audited --variant generalizing --out models/fmnist-generalizing

Needs Debian's python3-torch, python3-onnx, python3-sklearn and dataset-fashion-mnist. Writes:
  model.onnx   the audited model, input `image` [N, 1, 28, 28] = pixel / 255, output `logits` [N, 10],
               batch axis dynamic; normalisation is inside the graph
  model.json   tap names (ONNX tensors of the last conv of each stage), shapes, training figures
  split.json   the member subset D and the MINT protocols' member / non-member index lists
  reference/   a few inputs (inputs.npy) with PyTorch's logits and per-channel maxima of the
               taps then the logits (logits.npy, features.npy), for cross-checks
and, once, models/data/digits28-images-idx3-ubyte.gz (the cross-dataset non-members).

Deterministic: same seed, same machine kind, same files (torch single process, fixed threads).
"""

import argparse
import gzip
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

VARIANTS = {
    # Memorises: one block per stage, small D, long training, no regularisation -- like a model
    # fine-tuned on a small scraped set.
    "memorizing": dict(blocks=1, members=2000, epochs=40, optimizer="adam", lr=1e-3, weight_decay=0.0, augment=False),
    # Generalises: two blocks per stage, 5x the data, weight decay and augmentation.
    "generalizing": dict(blocks=2, members=10000, epochs=15, optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True),
}
WIDTHS = (16, 32, 64, 128)
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics (train split)
_FASHION = "${MINT_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
# Where the split's sources live: paths relative to split.json, ${VAR:-default} expanded.
SOURCES = {
    "fashion-train": {
        "images": f"{_FASHION}/train-images-idx3-ubyte.gz",
        "labels": f"{_FASHION}/train-labels-idx1-ubyte.gz",
    },
    "fashion-t10k": {
        "images": f"{_FASHION}/t10k-images-idx3-ubyte.gz",
        "labels": f"{_FASHION}/t10k-labels-idx1-ubyte.gz",
    },
    "digits28": {"images": "../data/digits28-images-idx3-ubyte.gz"},
}


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet4(nn.Module):
    """A 4-stage ResNet for 28x28 grey images: 28 -> 28 -> 14 -> 7 -> 4."""

    def __init__(self, blocks):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.register_buffer("std", torch.tensor(STD))
        self.stem = nn.Sequential(nn.Conv2d(1, WIDTHS[0], 3, 1, 1, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU())
        layers, cin = [], WIDTHS[0]
        for i, w in enumerate(WIDTHS):
            stride = 1 if i == 0 else 2
            layers.append(
                nn.Sequential(*[Block(cin if b == 0 else w, w, stride if b == 0 else 1) for b in range(blocks)])
            )
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(WIDTHS[-1], 10)

    def stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = self.stem(x)
        for layer in self.stages():
            x = layer(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def to_input(images_u8):
    return torch.from_numpy(images_u8.astype(np.float32) / 255.0).unsqueeze(1)


def augment(x, gen):
    """Random 2-pixel shifts and horizontal flips, from a seeded generator."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=gen)
    dy = torch.randint(0, 5, (n,), generator=gen)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + 28, dx[i] : dx[i] + 28] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def evaluate(model, x, y, batch=1000):
    model.eval()
    losses, correct = [], 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(x[i : i + batch])
            losses.append(F.cross_entropy(logits, y[i : i + batch], reduction="none"))
            correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    return torch.cat(losses).numpy(), correct / len(x)


def make_split(variant, members, train_hashes, test_hashes, digit_hashes, rng):
    """Balanced member / non-member lists for both protocols, with no image in both classes."""
    member_hashes = {train_hashes[i] for i in members}
    test_ok = np.array([i for i in range(len(test_hashes)) if test_hashes[i] not in member_hashes])
    digits_ok = np.array([i for i in range(len(digit_hashes)) if digit_hashes[i] not in member_hashes])
    m = rng.permutation(members)
    half = len(m) // 2
    t = rng.permutation(test_ok)
    d = rng.permutation(digits_ok)
    dhalf = len(d) // 2
    mem_train, mem_eval = sorted(m[:half].tolist()), sorted(m[half:].tolist())

    def entry(source, idx):
        return {"source": source, "indices": sorted(int(i) for i in idx)}

    return {
        "removed_duplicates": {
            "fashion-t10k": int(len(test_hashes) - len(test_ok)),
            "digits28": int(len(digit_hashes) - len(digits_ok)),
        },
        "protocols": {
            "same_distribution": {
                "description": "held-out members of D against the Fashion-MNIST test split",
                "head_train": {
                    "members": entry("fashion-train", mem_train),
                    "non_members": entry("fashion-t10k", t[:half]),
                },
                "eval": {
                    "members": entry("fashion-train", mem_eval),
                    "non_members": entry("fashion-t10k", t[half : 2 * half]),
                },
            },
            "cross_dataset": {
                "description": "held-out members of D against scikit-learn's optical digits (28x28): another dataset",
                "head_train": {
                    "members": entry("fashion-train", mem_train[: min(dhalf, half)]),
                    "non_members": entry("digits28", d[: min(dhalf, half)]),
                },
                "eval": {
                    "members": entry("fashion-train", mem_eval[: min(len(d) - dhalf, half)]),
                    "non_members": entry("digits28", d[dhalf : dhalf + min(len(d) - dhalf, half)]),
                },
            },
        },
    }


def tap_tensors(onnx_path, model):
    """ONNX tensor names of the last conv of each stage (BatchNorm folded into it on export)."""
    import onnx

    graph = onnx.load(onnx_path).graph
    taps = []
    for s, layer in enumerate(model.stages(), start=1):
        last = len(layer) - 1
        prefix = f"/layer{s}/layer{s}.{last}/conv2/"
        node = next(n for n in graph.node if n.op_type == "Conv" and n.name.startswith(prefix))
        taps.append({"name": f"stage{s}", "tensor": node.output[0], "node": node.name})
    return taps


def model_descriptor(variant, taps, convs, model, ref_x):
    """The audited model as mint's tools read it: the `model` and `taps` of an auditor config."""
    with torch.no_grad():
        spatial = []
        hooks = [c.register_forward_hook(lambda m, i, o: spatial.append(list(o.shape[2:]))) for c in convs]
        model(ref_x[:1])
        for h in hooks:
            h.remove()
    return {
        "model": {"id": f"fmnist-{variant}", "version": "1", "onnx": "model.onnx", "input_shape": [1, 28, 28]},
        "taps": [
            {
                "name": t["name"],
                "channels": c.out_channels,
                "kind": "activation_map",
                "tensor": t["tensor"],
                "spatial": hw,
            }
            for t, c, hw in zip(taps, convs, spatial)
        ]
        + [{"name": "logits", "channels": 10, "kind": "outcome", "tensor": "logits"}],
        "architecture": f"ResNet, 4 stages of {VARIANTS[variant]['blocks']} basic block(s), widths {list(WIDTHS)}",
        "preprocessing": "grey pixel / 255 (the Fashion-MNIST normalisation is inside the graph)",
    }


def write_digits(path):
    images, _ = mintdata.digits28()
    header = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # mtime=0 keeps the gzip bytes identical between runs.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + images.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--digits-out",
        default=os.path.join(os.path.dirname(__file__), "..", "..", "models", "data", "digits28-images-idx3-ubyte.gz"),
    )
    args = ap.parse_args()
    hp = VARIANTS[args.variant]
    started = time.time()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    train_x_u8, train_y_u8 = mintdata.fashion_mnist("train")
    test_x_u8, test_y_u8 = mintdata.fashion_mnist("t10k")
    members = np.sort(rng.choice(len(train_x_u8), size=hp["members"], replace=False))
    x, y = to_input(train_x_u8[members]), torch.from_numpy(train_y_u8[members].astype(np.int64))
    test_x, test_y = to_input(test_x_u8), torch.from_numpy(test_y_u8.astype(np.int64))

    model = ResNet4(hp["blocks"])
    if hp["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=hp["lr"], momentum=0.9, weight_decay=hp["weight_decay"], nesterov=True
        )
    steps_per_epoch = (len(x) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=hp["epochs"] * steps_per_epoch)

    def loss_of(idx):
        xb = augment(x[idx], gen) if hp["augment"] else x[idx]
        return F.cross_entropy(model(xb), y[idx])

    def log(epoch, loss):
        print(f"epoch {epoch}/{hp['epochs']}: train loss {loss:.4f} ({time.time() - started:.0f} s)", flush=True)
        return False

    fit(model, opt, hp["epochs"], lambda: shuffled_batches(len(x), 64, gen), loss_of, sched, log)

    model.eval()
    train_loss, train_acc = evaluate(model, x, y)
    test_loss, test_acc = evaluate(model, test_x, test_y)
    loss_auc = auc(-train_loss, -test_loss)
    print(f"train acc {train_acc:.4f}, test acc {test_acc:.4f}, loss-threshold AUC (all D vs all test) {loss_auc:.4f}")

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        onnx_path,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        opset_version=13,
        do_constant_folding=True,
    )
    taps = tap_tensors(onnx_path, model)

    # PyTorch's own view of a few samples, for cross-checks of the Rust extraction.
    convs = [layer[-1].conv2 for layer in model.stages()]
    bns = [layer[-1].bn2 for layer in model.stages()]
    captured = {}
    hooks = [bn.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, o)) for k, bn in enumerate(bns)]
    ref_x = torch.cat([x[:4], test_x[:4]])
    with torch.no_grad():
        ref_logits = model(ref_x)
    for h in hooks:
        h.remove()
    ref_features = torch.cat([captured[k].amax(dim=(2, 3)) for k in range(4)] + [ref_logits], dim=1)
    os.makedirs(os.path.join(args.out, "reference"), exist_ok=True)
    for name, array in (("inputs", ref_x), ("logits", ref_logits), ("features", ref_features)):
        np.save(os.path.join(args.out, "reference", f"{name}.npy"), array.numpy())

    if not os.path.exists(args.digits_out):
        write_digits(args.digits_out)
    digits_u8, _ = mintdata.digits28()
    split = make_split(
        args.variant,
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

    info = model_descriptor(args.variant, taps, convs, model, ref_x)
    info["training"] = dict(hp, seed=args.seed, threads=args.threads, torch=torch.__version__)
    info["results"] = {
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(test_acc, 4),
        "loss_threshold_auc_all_members_vs_test": round(float(loss_auc), 4),
        "seconds": round(time.time() - started, 1),
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info["results"]))


if __name__ == "__main__":
    main()
