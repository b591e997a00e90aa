#!/usr/bin/env python3
"""What the mint_audit.torch hooks cost on the serving thread, outside any server: the shipped
memorizing model in PyTorch (examples/python/fmnist_model.py), one thread, at each batch size:

- hooks alone: the capture hooks and the model hook called directly on ready tensors, with a
  `submit` that does nothing (the hooks' own work: Python, and the maps of at least
  `REDUCE_IN_HOOK_BYTES` reduced in their hook);
- submit alone: `Auditor.submit` of one forward's five taps (four maps read in place through
  DLPack and reduced, and the outcome);
- in a forward, paired: the hooked model against an unhooked copy on the same batch, in
  alternating order, as median per-pair differences in wall-clock and thread CPU time: with
  hooks that only keep the four maps to the end of the forward (what handing every map over in
  place would cost the forward), and with the real hooks and auditor;
- where that time goes: in a forward, each tapped map's channel maxima taken twice in a row in
  its hook, the first read against the second (the map as the layer left it, against the same
  map once read), beside the same call on maps taken out of an earlier forward and read
  repeatedly.

usage: .venv/bin/python benches/torch_hooks.py [--batches 1 16] [--pairs 2000]
Needs the mint_audit package in .venv (`pip install ./bindings/python` for the release build these
figures are for) and Debian's python3-torch (the venv sees system packages).
"""

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time

import fmnist_model  # examples/python, importable from the checkout's venv (scripts/setup.sh)
import torch
from bench_host import cpu_flags  # benches/, beside this script

import mint_audit
from mint_audit.torch import attach, module_for_tensor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

MODEL = os.path.join(ROOT, "models", "fmnist-memorizing")


class NoSubmit:
    """The auditor with a submit that does nothing (the hooks may still reduce maps with it)."""

    def __init__(self, auditor):
        self.channel_maxima = auditor.channel_maxima

    def submit(self, *_args):
        pass


def per_call_us(f, calls):
    started = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - started) / calls * 1e6


def timed_hooks(model, spent):
    """Wraps every forward hook on `model` so that its time adds to `spent[0]`."""
    for module in model.modules():
        for key, fn in list(module._forward_hooks.items()):

            def timed(*args, fn=fn):
                started = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    spent[0] += time.perf_counter() - started

            module._forward_hooks[key] = timed


def paired(plain, hooked, x, pairs, ids, spent=None):
    """Median per-pair (hooked - plain) differences in µs: wall clock, thread CPU; plain's median
    wall; and, with `spent` (see `timed_hooks`), the median time the hooked forward spent in its hooks."""
    rows, inside = [], []

    def timed(model):
        wall, cpu = time.perf_counter(), time.thread_time()
        model(x)
        return time.perf_counter() - wall, time.thread_time() - cpu

    for i in range(pairs):
        if i % 2:
            p = timed(plain)
        if spent is not None:
            spent[0] = 0.0
        with ids(i):
            h = timed(hooked)
        if spent is not None:
            inside.append(spent[0])
        if not i % 2:
            p = timed(plain)
        rows.append((p, h))
    med = lambda f: statistics.median(f(r) for r in rows) * 1e6  # noqa: E731
    in_hooks = statistics.median(inside) * 1e6 if inside else None
    return med(lambda r: r[1][0] - r[0][0]), med(lambda r: r[1][1] - r[0][1]), med(lambda r: r[0][0]), in_hooks


def reads_in_the_hook(base, auditor, maps, batch, forwards):
    """Per tap: KiB, median µs of the first and the second `channel_maxima` of the map in its
    hook, and of the same call on the map kept from a forward and read over and over."""
    model = copy.deepcopy(base)
    named = dict(model.named_modules())
    taps = [tap for tap, kind in auditor.taps if kind != "outcome"]
    times = {tap: ([], []) for tap in taps}
    kept = {}

    def hook(_m, _i, out, tap):
        t0 = time.perf_counter()
        auditor.channel_maxima(tap, out)
        t1 = time.perf_counter()
        auditor.channel_maxima(tap, out)
        times[tap][0].append(t1 - t0)
        times[tap][1].append(time.perf_counter() - t1)
        kept[tap] = out

    handles = [named[n].register_forward_hook(lambda m, i, o, t=t: hook(m, i, o, t)) for t, n in zip(taps, maps)]
    x = torch.rand(batch, 1, 28, 28)
    with torch.no_grad():
        for _ in range(20):
            model(x)
        for first, second in times.values():
            first.clear(), second.clear()
        for _ in range(forwards):
            model(x)
    for handle in handles:
        handle.remove()
    for tap in taps:
        out = kept[tap]
        warm = statistics.median(
            per_call_us(lambda out=out, tap=tap: auditor.channel_maxima(tap, out), 20) for _ in range(15)
        )
        first, second = (statistics.median(t) * 1e6 for t in times[tap])
        yield tap, out.numel() * out.element_size() / 1024, first, second, warm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--pairs", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(MODEL, "auditor.json")) as f:
        config = json.load(f)
    config["metrics"] = {}
    auditor = mint_audit.Auditor(config, base_dir=MODEL)
    base = fmnist_model.load(MODEL)
    maps = [module_for_tensor(auditor.tap_tensor(tap)) for tap, kind in auditor.taps if kind != "outcome"]
    print(
        f"CPU: {platform.machine()}, {os.cpu_count()} logical CPUs; flags: {cpu_flags()}; "
        f"mint_audit {mint_audit.__version__} (reduce ISA {mint_audit.REDUCE_ISA}); torch {torch.__version__}\n"
    )
    print(
        "| batch | forward µs, unhooked | hooks alone µs | submit alone µs | keeping the maps: added µs (wall, CPU) "
        "| hooks + auditor: added µs (wall, CPU) | of which in the hooks µs | added / forward |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    next_id = [0]
    for batch in args.batches:
        x = torch.rand(batch, 1, 28, 28)
        plain = copy.deepcopy(base)
        keeping = copy.deepcopy(base)
        kept = []
        named = dict(keeping.named_modules())
        for name in maps:
            named[name].register_forward_hook(lambda _m, _i, out: kept.append(out))
        keeping.register_forward_hook(lambda _m, _i, _out: kept.clear())
        audited = copy.deepcopy(base)

        def ids(_i):
            first = next_id[0]
            next_id[0] += batch
            return hooks.samples(list(range(first, first + batch)))

        with torch.no_grad():
            for _ in range(100):
                plain(x), keeping(x), audited(x)
            # The taps of one forward, for the hooks and submit called alone.
            taps = {}
            named = dict(audited.named_modules())
            probes = [named[n].register_forward_hook(lambda _m, _i, out, n=n: taps.__setitem__(n, out)) for n in maps]
            y = audited(x)
            for probe in probes:
                probe.remove()
            tensors = [taps[n] for n in maps] + [y]
            hooks = attach(audited, auditor)
            hooks.auditor = NoSubmit(auditor)
            captures = [hooks._capture_hook(i, "activation_map") for i in range(len(maps))]

            def hooks_alone():
                for capture, t in zip(captures, tensors):
                    capture(None, None, t)
                hooks._model_hook(None, None, y)

            hooks_us = per_call_us(hooks_alone, args.pairs)
            hooks.remove()

            def submit_alone():
                first = next_id[0]
                next_id[0] += batch
                auditor.submit(list(range(first, first + batch)), tensors)

            submit_us = per_call_us(submit_alone, args.pairs)
            hooks = attach(audited, auditor)
            keep_wall, keep_cpu, _, _ = paired(plain, keeping, x, args.pairs, lambda _i: contextlib.nullcontext())
            spent = [0.0]
            timed_hooks(audited, spent)
            wall, cpu, forward, in_hooks = paired(plain, audited, x, args.pairs, ids, spent)
            hooks.remove()
        print(
            f"| {batch} | {forward:.0f} | {hooks_us:.1f} | {submit_us:.1f} | {keep_wall:.0f}, {keep_cpu:.0f} "
            f"| {wall:.0f}, {cpu:.0f} | {in_hooks:.0f} | {wall / forward:.2%} |",
            flush=True,
        )
    print("\n| batch | tap | map KiB | first read in the hook µs | second read µs | read out of a forward µs |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch in args.batches:
        for row in reads_in_the_hook(base, auditor, maps, batch, max(args.pairs // 4, 50)):
            print("| {} | {} | {:.0f} | {:.1f} | {:.1f} | {:.1f} |".format(batch, *row), flush=True)
    stats = auditor.stats()
    auditor.close(5.0)
    print(f"\n{stats.submitted} samples submitted, {stats.dropped_total} dropped")


if __name__ == "__main__":
    main()
