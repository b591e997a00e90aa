"""Trains the reference audited language models: small byte-level causal transformers on a
fixed, seeded member subset of Debian's `fortunes` collection.

    .venv/bin/python -m mint_research.train_lm --variant memorizing   --out models/fortunes-lm-memorizing
    .venv/bin/python -m mint_research.train_lm --variant generalizing --out models/fortunes-lm-generalizing

Needs Debian's python3-torch, python3-onnx and fortunes. Writes:
  model.onnx   input `tokens` [N, T] int64 (byte values, 0 = BOS and padding), outputs `logits`
               [N, T, 256], the hidden states after each block `block1`..`block4` [N, T, 128],
               and `token_scores` [N, T - 1, 3]: for the token at position t + 1, its
               log-probability given the tokens before it, and the mean and standard deviation
               of the log-probabilities of the model's next-token distribution there (what
               Min-K%++ standardises by); batch and sequence axes dynamic
  model.json   taps, training figures (member / non-member loss, the gap that memorisation makes)
  split.json   the corpus digest, the members (training set) and the protocol's member /
               non-member lists (same distribution: held-out fortunes of the same collections),
               as indices into
  ../data/fortunes.json  the fortunes, as used (whitespace collapsed, 32 to 127 ASCII bytes,
               deduplicated), written once

Deterministic: same seed, same machine kind, same fortunes package (its digest is recorded).
"""

import argparse
import glob
import hashlib
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mint_recipes.fit import fit, shuffled_batches

FORTUNES = os.environ.get("MINT_FORTUNES", "/usr/share/games/fortunes")
VARIANTS = {
    # Memorises: a small member set, many epochs, no regularisation.
    "memorizing": dict(members=1000, epochs=40, weight_decay=0.0),
    # Closer to a model trained once over a larger corpus: 4x the members, a few epochs,
    # weight decay.
    "generalizing": dict(members=4000, epochs=6, weight_decay=0.1),
}
CONTEXT = 128  # BOS + up to 127 bytes
WIDTH, HEADS, BLOCKS = 128, 4, 4


def load_fortunes(folder):
    """Every fortune of the collection's text files, whitespace collapsed, 32..127 ASCII bytes,
    each once, in a fixed order; and the digest of the files read."""
    digest = hashlib.sha256()
    texts, seen = [], set()
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        if path.endswith((".dat", ".u8")) or os.path.islink(path) or not os.path.isfile(path):
            continue
        raw = open(path, "rb").read()
        digest.update(os.path.basename(path).encode() + b"\0" + raw)
        for entry in raw.split(b"\n%\n"):
            text = b" ".join(entry.split())
            if 32 <= len(text) <= CONTEXT - 1 and all(32 <= b < 127 for b in text) and text not in seen:
                seen.add(text)
                texts.append(text.decode("ascii"))
    return texts, digest.hexdigest()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
        self.ln2 = nn.LayerNorm(WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x, causal):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ByteLM(nn.Module):
    """A GPT-style byte-level language model: 4 blocks of width 128, learned positions."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(256, WIDTH)
        self.position = nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.ModuleList([Block() for _ in range(BLOCKS)])
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, 256)

    def forward(self, tokens):
        t = tokens.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        x = self.embed(tokens) + self.position(torch.arange(t))[None]
        hidden = []
        for block in self.blocks:
            x = block(x, causal)
            hidden.append(x)
        return self.head(self.ln(x)), hidden


class Exported(nn.Module):
    """The served graph: logits, the taps, and each token's score."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, tokens):
        logits, hidden = self.lm(tokens)
        return (logits, *hidden, token_scores(logits, tokens))


def token_scores(logits, tokens):
    """[N, T - 1, 3]: log p of each next token, and the mean and standard deviation of log p
    under the model's distribution at that position (Min-K%++'s standardisation)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    actual = logp.gather(-1, tokens[:, 1:, None])[..., 0]
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp * logp).sum(-1) - mu * mu).clamp(min=0).sqrt()
    return torch.stack([actual, mu, sigma], dim=-1)


def encode(texts):
    """Tokens [n, CONTEXT] (BOS, bytes, zero padding) and lengths (BOS included)."""
    out = np.zeros((len(texts), CONTEXT), np.int64)
    lengths = np.zeros(len(texts), np.int64)
    for i, t in enumerate(texts):
        b = np.frombuffer(t.encode("ascii"), np.uint8)
        out[i, 1 : 1 + len(b)] = b
        lengths[i] = 1 + len(b)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def mean_losses(model, tokens, lengths, batch=256):
    """Per-text mean next-token loss over its real bytes."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            x, n = tokens[i : i + batch], lengths[i : i + batch]
            scores = token_scores(model(x)[0], x)[..., 0]
            valid = torch.arange(CONTEXT - 1)[None] < (n - 1)[:, None]
            out.append(-(scores * valid).sum(1) / valid.sum(1))
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    variant = VARIANTS[args.variant]
    args.members, args.epochs = variant["members"], variant["epochs"]
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    texts, corpus_digest = load_fortunes(FORTUNES)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(texts))
    members = sorted(order[: args.members].tolist())
    rest = order[args.members :]
    # Same-distribution non-members: held-out fortunes. Head training and evaluation get
    # disjoint halves of the members and as many non-members each; the rest of the non-members
    # are spare (calibration, the dataset-level test's reference cohort).
    m = rng.permutation(members)
    half = len(m) // 2
    split = {
        "corpus": {
            "source": "fortunes",
            "folder": FORTUNES,
            "sha256": corpus_digest,
            "texts": len(texts),
            "file": "../data/fortunes.json",
        },
        "members": members,
        "protocols": {
            "same_distribution": {
                "head_train": {"members": sorted(m[:half].tolist()), "non_members": sorted(rest[:half].tolist())},
                "eval": {"members": sorted(m[half:].tolist()), "non_members": sorted(rest[half : 2 * half].tolist())},
                "spare_non_members": sorted(rest[2 * half :].tolist()),
            }
        },
    }
    tokens, lengths = encode([texts[i] for i in members])
    model = ByteLM()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=variant["weight_decay"])
    steps = args.epochs * math.ceil(len(members) / 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)

    def loss_of(idx):
        x, n = tokens[idx], lengths[idx]
        t = int(n.max())
        x = x[:, :t]
        logits = model(x)[0][:, :-1]
        target = x[:, 1:].masked_fill(torch.arange(t - 1)[None] >= (n - 1)[:, None], -100)
        return F.cross_entropy(logits.reshape(-1, 256), target.reshape(-1), ignore_index=-100)

    def log(epoch, loss):
        print(f"epoch {epoch}/{args.epochs}: train loss {loss:.3f} ({time.time() - started:.0f} s)", flush=True)
        return False

    fit(model, opt, args.epochs, lambda: shuffled_batches(len(members), 32, gen), loss_of, sched, log)

    held = rest[: 2 * half]
    ht, hl = encode([texts[i] for i in held])
    member_loss = mean_losses(model, tokens, lengths)
    held_loss = mean_losses(model, ht, hl)
    print(f"mean loss per byte: members {member_loss.mean():.3f}, held-out {held_loss.mean():.3f}")

    model.eval()
    onnx_path = os.path.join(args.out, "model.onnx")
    names = ["logits"] + [f"block{i + 1}" for i in range(BLOCKS)] + ["token_scores"]
    axes = {"tokens": {0: "n", 1: "t"}, **{k: {0: "n", 1: "t"} for k in names}}
    torch.onnx.export(
        Exported(model),
        (tokens[:2, :40],),
        onnx_path,
        input_names=["tokens"],
        output_names=names,
        dynamic_axes=axes,
        opset_version=17,
    )
    corpus = os.path.join(args.out, "..", "data", "fortunes.json")
    os.makedirs(os.path.dirname(corpus), exist_ok=True)
    with open(corpus, "w") as f:
        json.dump(texts, f, indent=0)
        f.write("\n")
    with open(os.path.join(args.out, "split.json"), "w") as f:
        json.dump(split, f, indent=1)
        f.write("\n")
    taps = [
        {"name": f"block{i + 1}", "channels": WIDTH, "kind": "token_sequence", "tensor": f"block{i + 1}"}
        for i in range(BLOCKS)
    ]
    taps.append({"name": "token_scores", "channels": 3, "kind": "token_logprobs", "tensor": "token_scores"})
    info = {
        "model": {"id": f"fortunes-lm-{args.variant}", "version": "1", "onnx": "model.onnx"},
        "taps": taps,
        "architecture": (
            f"byte-level causal transformer: {BLOCKS} blocks, width {WIDTH}, {HEADS} heads, context {CONTEXT}"
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "variant": args.variant,
            "members": len(members),
            "epochs": args.epochs,
            "optimizer": f"AdamW, one-cycle, max lr 2e-3, weight decay {variant['weight_decay']}",
            "seed": args.seed,
            "threads": args.threads,
            "seconds": round(time.time() - started, 1),
            "mean_loss_members": float(member_loss.mean()),
            "mean_loss_held_out": float(held_loss.mean()),
        },
        "torch": torch.__version__,
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
    print(f"wrote {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
