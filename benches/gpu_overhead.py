"""The GPU path of the end-to-end overhead benchmark: what the audit adds to a PyTorch model's
forward pass on an NVIDIA GPU, through the `mint_audit.torch` hooks, which reduce each
stage's map with `amax` on the device and hand over only the channel maxima.

Run it on a machine with a CUDA build of PyTorch and the mint_audit package installed:

    .venv/bin/python -m mint_research.make_overhead_models target/overhead-models   # once
    python benches/gpu_overhead.py [--device cuda] [--batch 1 8 64] [--pairs 40]

For each model of research/mint_research/make_overhead_models.py (a ResNet-18 at 224² and a ResNet-50 at
112², the same seeded weights as their ONNX files; four stage taps and the 1,000 logits, a
Vanilla head, every sample audited) and each batch, in alternating pairs after a warm-up:
the forward pass alone, then the forward pass with the hooks attached (which includes the
device-side amax, the copy of the maxima to the host and `submit`), each timed from a
synchronised device to a synchronised device. Prints a Markdown table (medians, and the
median of the per-pair ratios) with the GPU's name and the CPU's flags, and writes it to
target/bench-results/gpu_overhead.md.

`--device cpu` runs the same measurement on the CPU (the hooks then hand over the maps in
place): a check that the script works, not the GPU figure.
"""

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_host import cpu_flags  # benches/, beside this script

import mint_audit
from mint_audit.torch import attach

REPO = Path(__file__).resolve().parent.parent


def load_model_script():
    spec = importlib.util.spec_from_file_location(
        "make_overhead_models", REPO / "research/mint_research/make_overhead_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, f):
    synchronize(device)
    t = time.perf_counter()
    f()
    synchronize(device)
    return time.perf_counter() - t


def measure(name, models_dir, builder, device, batch, pairs):
    model_dir = models_dir / name
    config = json.loads((model_dir / "auditor.json").read_text())
    model, side = builder.build(name)
    model = model.to(device)
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(batch)).to(device)
    # The stage taps are the outputs of `stages.i`; the logits are the last element of the
    # model's tuple output.
    modules = {f"stage{i + 1}": f"stages.{i}" for i in range(4)}
    plain, audited, ratios = [], [], []
    next_id = 0
    with torch.inference_mode(), mint_audit.Auditor(config, base_dir=str(model_dir)) as auditor:
        for pair in range(pairs + 1):
            t_plain = timed(device, lambda: model(x))
            hooks = attach(model, auditor, modules=modules, outcome=lambda out: out[4])
            with hooks.samples(list(range(next_id, next_id + batch))):
                t_audited = timed(device, lambda: model(x))
            next_id += batch
            hooks.remove()
            if hooks.errors:
                sys.exit(f"{name}: the hooks reported errors {hooks.errors}")
            if pair == 0:
                continue  # warm-up: cuDNN's algorithm search, the auditor's first plans
            plain.append(t_plain)
            audited.append(t_audited)
            ratios.append(t_audited / t_plain)
        report = auditor.close(30.0)
        stats = auditor.stats()
    return {
        "model": name,
        "batch": batch,
        "forward_ms": statistics.median(plain) * 1e3,
        "audited_ms": statistics.median(audited) * 1e3,
        "ratio": statistics.median(ratios),
        "submitted": stats.submitted,
        "audited": stats.audited,
        "dropped": stats.dropped_total,
        "abandoned": report.abandoned,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--models", default=str(REPO / "target/overhead-models"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "no CUDA device: this benchmark needs an NVIDIA GPU and a CUDA build of PyTorch "
            "(--device cpu checks the script on the CPU)"
        )
    models_dir = Path(args.models)
    builder = load_model_script()
    missing = [n for n in builder.SPECS if not (models_dir / n / "auditor.json").exists()]
    if missing:
        sys.exit(
            f"missing {missing} under {models_dir}: "
            f"run .venv/bin/python -m mint_research.make_overhead_models {models_dir}"
        )
    torch.backends.cudnn.benchmark = True
    accelerator = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (script check, not the GPU figure)"
    )
    rows = [measure(n, models_dir, builder, device, b, args.pairs) for n in builder.SPECS for b in args.batch]
    text = (
        f"### Audit overhead on {accelerator}: PyTorch forward with the mint_audit.torch hooks against without\n\n"
        f"torch {torch.__version__}; mint_audit {mint_audit.__version__}; CPU flags: {cpu_flags()}; "
        f"{args.pairs} alternating pairs after a warm-up, medians.\n\n"
        "| model | batch | forward ms | forward + audit ms | × forward (median of pairs) "
        "| submitted | audited | dropped |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    for r in rows:
        text += (
            f"| {r['model']} | {r['batch']} | {r['forward_ms']:.3f} | {r['audited_ms']:.3f} | {r['ratio']:.3f} | "
            f"{r['submitted']} | {r['audited']} | {r['dropped']} |\n"
        )
    print(text)
    out = REPO / "target/bench-results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
