#!/usr/bin/env python3
"""What the mint_audit.torch hooks add to a served language model's forward pass.

Models, each with every sample audited (a Vanilla head on one library worker):

- `fortunes-lm`: the shipped byte-level transformer (models/fortunes-lm-memorizing, 4 blocks
  of width 128) with its shipped configuration: the 4 blocks' hidden states max-pooled over
  each text's tokens and the Min-K% family of its token scores;
- `gpt2-small`: a Hugging Face `GPT2LMHeadModel` the size of GPT-2 small (12 layers, width 768,
  12 heads, vocabulary 50,257; random weights, seed 0, built from its config: no download),
  served as serving code calls it (`model(input_ids=..., attention_mask=...)`, right padding),
  with four configurations: `blocks` (4 of its 12 blocks' hidden states mean-pooled over the
  valid tokens), `blocks+log p` (the same and each token's log-probability: a one-channel
  `token_logprobs` tap, Min-K%, one pass over the 50,257-word vocabulary) and `blocks+scores`
  (the three channels Min-K%++ needs, the mean and spread of each position's distribution too),
  the token scores computed by the hooks in PyTorch where the logits are; and `blocks+logits`
  (the logits handed to the library as a `token_logits` tap, scored by its own kernels into the
  same three channels on the serving thread).

For each model and batch (1, 8, 32 texts of `--tokens` tokens, lengths drawn between half and
all of it), in alternating pairs after a warm-up: the forward pass of an unhooked copy, and the
forward pass with the hooks attached, timed from a synchronised device to a synchronised
device. Reports the medians, the median of the per-pair differences (the added latency) and of
the per-pair ratios, with their interquartile range; the hook errors and dropped samples, which
must be none. PyTorch runs on `--threads` threads (default 1, as the other benchmarks: the
library's worker takes the other core); the table is written to
target/bench-results/lm_hooks.md.

    .venv/bin/python benches/lm_hooks.py [--batches 1 8 32] [--seconds 40] [--models fortunes-lm gpt2-small]
    python benches/lm_hooks.py --device cuda       # on a machine with a CUDA build of PyTorch

Needs the mint_audit package (`pip install ./bindings/python`, the release build these figures
are for), transformers and onnx (scripts/setup.sh installs them in .venv).
"""

import argparse
import copy
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from bench_host import cpu_flags, cpu_model  # benches/, beside this script

import mint_audit
from mint_audit.torch import attach, transformer_layers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "research"))
warnings.filterwarnings("ignore", module="transformers")

GPT2_BLOCKS = (2, 5, 8, 11)  # which of the 12 blocks' hidden states are tapped


def linear_head(directory, width):
    """A Vanilla head `[N, width] -> [N, 1]` (sigmoid of a fixed linear map) as an ONNX file: the
    head's own cost is microseconds per sample on the worker, not what is measured here."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = (np.random.default_rng(1).standard_normal((width, 1)) * 0.01).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["score"])],
        "head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(weights, "w")],
    )
    path = os.path.join(directory, f"head-{width}.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def fortunes_lm(device, _directory, tokens):
    from mint_research import train_lm

    directory = os.path.join(ROOT, "models", "fortunes-lm-memorizing")
    model = train_lm.ByteLM()
    model.load_state_dict(torch.load(os.path.join(directory, "model.pt")))
    config = json.load(open(os.path.join(directory, "auditor.json")))
    config["head"]["path"] = os.path.join(directory, config["head"]["path"])
    vocab = 256

    def attach_to(hooked, auditor):
        modules = {f"block{i + 1}": f"blocks.{i}" for i in range(4)}
        return attach(hooked, auditor, modules=modules, outcome=lambda out: out[0])

    def call(model, ids, mask):
        return model(ids)  # the shipped model reads a padded batch; the hooks take lengths below

    # The shipped model takes no attention mask: the hooks are given each batch's lengths.
    given = lambda lengths: {"lengths": lengths}  # noqa: E731
    yield "fortunes-lm", "shipped", model.to(device).eval(), config, attach_to, call, given, vocab, min(tokens, 128)


def gpt2_small(device, directory, tokens):
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).to(device).eval()  # GPT-2 small's sizes
    width = model.config.n_embd
    blocks = [
        {"name": f"block{i}", "channels": width, "kind": "token_sequence", "pooling": "mean", "max_tokens": 1024}
        for i in GPT2_BLOCKS
    ]
    scores = {"name": "token_scores", "channels": 3, "kind": "token_logprobs", "max_tokens": 1024}
    logprobs = {**scores, "channels": 1}
    logits = {"name": "logits", "channels": model.config.vocab_size, "kind": "token_logits", "max_tokens": 1024}
    # The default LM features: 15 with three channels (Min-K%++ among them), 10 with one.
    for name, taps, extra in [
        ("blocks", blocks, 0),
        ("blocks+log p", [*blocks, logprobs], 10),
        ("blocks+scores", [*blocks, scores], 15),
        ("blocks+logits", [*blocks, logits], 15),
    ]:
        width_in = width * len(blocks) + extra
        head = linear_head(directory, width_in)
        config = {
            "model": {"id": "gpt2-small-random", "version": "1"},
            "taps": taps,
            "head": {"kind": "vanilla", "path": head, "sha256": hashlib.sha256(open(head, "rb").read()).hexdigest()},
        }

        def attach_to(hooked, auditor):
            layers = transformer_layers(hooked)
            return attach(hooked, auditor, modules={f"block{i}": layers[i] for i in GPT2_BLOCKS})

        def call(model, ids, mask):
            return model(input_ids=ids, attention_mask=mask)

        # The hooks read the call's own attention_mask, as with any Hugging Face model.
        given = lambda _lengths: {}  # noqa: E731
        yield "gpt2-small", name, model, config, attach_to, call, given, model.config.vocab_size, tokens


MODELS = {"fortunes-lm": fortunes_lm, "gpt2-small": gpt2_small}


def synchronise(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(model, config, attach_to, call, given, vocab, tokens, batch, device, seconds):
    gen = torch.Generator().manual_seed(batch)
    lengths = torch.randint(max(2, tokens // 2), tokens + 1, (batch,), generator=gen)
    ids = torch.randint(1, vocab, (batch, tokens), generator=gen)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()
    ids, mask = ids.to(device), mask.to(device)
    auditor = mint_audit.Auditor({**config, "workers": 1})
    plain = model
    hooked = copy.deepcopy(model)
    hooks = attach_to(hooked, auditor)
    next_id = [0]

    def forward(m):
        synchronise(device)
        start = time.perf_counter()
        with torch.no_grad():
            if m is hooked:
                sample_ids = list(range(next_id[0], next_id[0] + batch))
                next_id[0] += batch
                with hooks.samples(sample_ids, **given(lengths)):
                    call(m, ids, mask)
            else:
                call(m, ids, mask)
        synchronise(device)
        return time.perf_counter() - start

    for _ in range(2):  # warm-up: allocator, kernels, the auditor's worker
        one = forward(plain)
        forward(hooked)
    pairs = int(min(1000, max(6, seconds / (2 * one))))
    plain_s, hooked_s = [], []
    for i in range(pairs):
        order = (plain, hooked) if i % 2 == 0 else (hooked, plain)
        got = {id(m): forward(m) for m in order}
        plain_s.append(got[id(plain)])
        hooked_s.append(got[id(hooked)])
    hooks.remove()
    report = auditor.close(60.0)
    diffs = [h - p for h, p in zip(hooked_s, plain_s)]
    ratios = [h / p for h, p in zip(hooked_s, plain_s)]
    q = lambda xs: statistics.quantiles(xs, n=4)  # noqa: E731
    return {
        "pairs": pairs,
        "forward_ms": statistics.median(plain_s) * 1e3,
        "hooked_ms": statistics.median(hooked_s) * 1e3,
        "added_ms": statistics.median(diffs) * 1e3,
        "added_iqr_ms": [x * 1e3 for x in (q(diffs)[0], q(diffs)[2])],
        "ratio": statistics.median(ratios),
        "ratio_iqr": [q(ratios)[0], q(ratios)[2]],
        "audited": report.stats.audited,
        "dropped": sum(report.stats.dropped.values()),
        "hook_errors": dict(hooks.errors),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--tokens", type=int, default=64, help="padded length of each batch (lengths vary below it)")
    ap.add_argument("--seconds", type=float, default=40.0, help="time to spend on the pairs of each row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-results", "lm_hooks.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    header = (
        f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} logical CPUs; flags: {cpu_flags()}; "
        f"device: {device_name}; "
        f"torch {torch.__version__} on {args.threads} thread(s); mint_audit {mint_audit.__version__}; "
        f"{args.tokens} tokens padded, lengths {args.tokens // 2}-{args.tokens}"
    )
    print(header, flush=True)
    lines = [
        header,
        "",
        "| model | taps | batch | pairs | forward ms | hooked ms | added ms [IQR] | hooked / forward [IQR] "
        "| hook errors | dropped |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    failed = False
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            for model_name, taps, model, config, attach_to, call, given, vocab, tokens in MODELS[name](
                args.device, directory, args.tokens
            ):
                for batch in args.batches:
                    r = measure(model, config, attach_to, call, given, vocab, tokens, batch, args.device, args.seconds)
                    failed |= bool(r["hook_errors"]) or r["dropped"] > 0
                    line = (
                        f"| {model_name} | {taps} | {batch} | {r['pairs']} | {r['forward_ms']:.1f} | "
                        f"{r['hooked_ms']:.1f} | {r['added_ms']:.2f} [{r['added_iqr_ms'][0]:.2f}, "
                        f"{r['added_iqr_ms'][1]:.2f}] | {r['ratio']:.3f} [{r['ratio_iqr'][0]:.3f}, "
                        f"{r['ratio_iqr'][1]:.3f}] | {r['hook_errors'] or 'none'} | {r['dropped']} |"
                    )
                    print(line, flush=True)
                    lines.append(line)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written to {args.out}")
    if failed:
        sys.exit("hook errors or dropped samples: the figures above do not describe a working audit")


if __name__ == "__main__":
    main()
