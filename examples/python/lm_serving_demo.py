#!/usr/bin/env python3
"""A language model served and audited live: the shipped byte-level transformer
(models/fortunes-lm-memorizing) answers batches of fortunes of every length, padded into one
tensor per batch, while mint-audit's PyTorch hooks hand its blocks' hidden states and its
token scores to the auditor with each batch's lengths. Three streams of traffic: a reference
cohort of known non-members, a suspect cohort (fortunes the model was trained on), and a
control cohort (other non-members). At the end it prints each cohort's evidence, as a
regulator would read it off the metrics.

    .venv/bin/python examples/python/lm_serving_demo.py [--batches-per-cohort 20]

Exits non-zero when the accounting does not add up, when the suspect cohort is not found to
score above the reference, or when the control cohort is.
"""

import argparse
import json
import os
import sys

import torch

import mint_audit
from mint_audit.torch import attach
from mint_research import train_lm  # the model's definition; .venv imports it (scripts/setup.sh)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

MODEL = os.path.join(ROOT, "models", "fortunes-lm-memorizing")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches-per-cohort", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    texts = json.load(open(os.path.join(ROOT, "models", "data", "fortunes.json")))
    split = json.load(open(os.path.join(MODEL, "split.json")))["protocols"]["same_distribution"]
    n = args.batches_per_cohort * args.batch
    # Each stream a random draw from its list (the lists are sorted by index, and the fortunes
    # by collection: slices of them would differ in kind, not only in membership).
    gen = torch.Generator().manual_seed(0)
    draw = lambda indices: [indices[i] for i in torch.randperm(len(indices), generator=gen)[:n].tolist()]  # noqa: E731
    streams = {
        "reference": draw(split["spare_non_members"]),
        "suspect": draw(split["eval"]["members"]),
        "control": draw(split["eval"]["non_members"]),
    }
    config = json.load(open(os.path.join(MODEL, "auditor.json")))
    config["cohorts"] = ["reference", "suspect", "control"]
    config["evidence"] = {"window": 100, "min_reference": 100}
    config["workers"] = 1  # scores in submission order: the reference is ahead of each window
    auditor = mint_audit.Auditor(config, base_dir=MODEL)

    model = train_lm.ByteLM()
    model.load_state_dict(torch.load(os.path.join(MODEL, "model.pt")))
    model.eval()
    hooks = attach(
        model, auditor, modules={f"block{i + 1}": f"blocks.{i}" for i in range(4)}, outcome=lambda out: out[0]
    )

    served = 0
    longest = shortest = None
    for cohort, indices in streams.items():
        for b in range(0, len(indices), args.batch):
            chosen = indices[b : b + args.batch]
            tokens, lengths = train_lm.encode([texts[i] for i in chosen])
            tokens = tokens[:, : int(lengths.max())]  # one padded tensor per batch
            longest = max(longest or 0, int(lengths.max()))
            shortest = min(shortest or 1 << 30, int(lengths.min()))
            with torch.no_grad(), hooks.samples(chosen, cohort=cohort, lengths=lengths):
                model(tokens)  # serving: the logits would go back to the client
            served += len(chosen)
    hooks.remove()
    report = auditor.close(30.0)
    stats = report.stats
    print(
        f"served {served} texts in batches of {args.batch}, {shortest} to {longest} tokens each; "
        f"hook errors: {hooks.errors or 'none'}"
    )
    print(f"submitted {stats.submitted} = audited {stats.audited} + dropped {sum(stats.dropped.values())}")
    ok = stats.submitted == served == stats.audited + sum(stats.dropped.values()) and not hooks.errors
    print(f"{'cohort':<10} {'audited':>7} {'flagged':>7}  rank test against the reference (one-sided)")
    evidence = {}
    for cohort in ("suspect", "control"):
        e = auditor.evidence(cohort)
        evidence[cohort] = e
        rank = e["overall_rank"]
        detail = "no reference yet" if rank is None else f"AUC {rank[2]:.3f}, p = {rank[1]:.2g}"
        alarms = e["alarms"].get("rank", 0)
        print(f"{cohort:<10} {e['audited']:>7} {e['flagged']:>7}  {detail}; {alarms} of {e['windows']} windows alarmed")
    suspect, control = evidence["suspect"]["overall_rank"], evidence["control"]["overall_rank"]
    found = suspect is not None and suspect[1] < 0.01
    quiet = control is not None and control[1] >= 0.01
    print(
        "the suspect cohort "
        + ("scores above the reference: the model was trained on it" if found else "is NOT told apart")
        + "; the control cohort "
        + ("does not" if quiet else "DOES (a false alarm)")
    )
    return 0 if ok and found and quiet else 1


if __name__ == "__main__":
    sys.exit(main())
