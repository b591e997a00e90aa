"""Regenerates the dataset-inference section of docs/experiments.md (and
docs/experiments-dataset-inference.json): were a data owner's texts trained on, for the shipped
language models (models/fortunes-lm-*), by `mint dataset-inference` (Maini et al. 2024: per-text
features combined by a linear model learnt on one half, a one-sided Welch t-test on the other)
beside the rank test on the shipped MINT head's score that the library's cohort evidence runs.

    .venv/bin/python -m mint_research.lm_dataset_inference      (builds `mint` in release first)
    .venv/bin/python -m mint_research.lm_dataset_inference --doc-only   (the tables from the JSON)

Per text, from the library's own code (`mint_audit.features` on the model's token scores, and
the shipped head through an `Auditor`): the loss (mean negative log-probability of the tokens),
the zlib ratio (loss over the zlib-compressed length in bytes; Carlini et al. 2021), Min-K% and
Min-K%++ at k = 5, 10, 20, 30, 50% (docs/design.md, "Min-K%: which tokens"), and the head's
score. Sets, from each model's split.json (same_distribution protocol): the held-out members
(`eval.members`) are the suspect set; the held-out non-members and the spare non-members are
the validation pool. Three runs per model:

1. the members against the spare non-members (`--expect evidence`);
2. the null control on whole sets: the held-out non-members against the spare non-members
   (`--expect no-evidence`);
3. the power study: suspect sets of n members against n validation texts, and its null
   control, two sets of n non-members drawn together from the pool and split (200 draws per
   size): how often each test gives p < 0.01, and the texts needed for a power of 0.8.

Needs what scripts/setup.sh installs (the venv with mint_audit, Debian's torch).
"""

import json
import os
import subprocess
import sys
import time
import zlib

from mint_research import lm_experiments
from mint_research.generated import replace_block

ROOT = lm_experiments.ROOT
MINT = os.path.join(ROOT, "target", "release", "mint")
DOC = os.path.join(ROOT, "docs", "experiments.md")
JSON = os.path.join(ROOT, "docs", "experiments-dataset-inference.json")
KS = ["0.05", "0.1", "0.2", "0.3", "0.5"]
# The shipped configuration's token-score features, in the library's order (docs/python.md):
# mean log p, Min-K% at KS, Min-K%++ at KS, quantiles 0/25/50/75%.
SCORE_COLUMNS = ["mean"] + [f"min_k:{k}" for k in KS] + [f"min_kpp:{k}" for k in KS] + ["q0", "q25", "q50", "q75"]
FEATURES = ["loss", "zlib_ratio"] + [f"min_k:{k}" for k in KS] + [f"min_kpp:{k}" for k in KS] + ["head"]
SIZES = [10, 20, 50, 100, 200, 500, 1000]
DRAWS = 200
ALPHA = 0.01


def sh(*args):
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run([str(a) for a in args], check=False, cwd=ROOT, capture_output=True, text=True)


def table(data, config, indices, path):
    """Writes the per-text feature table of `indices` (JSON Lines, docs/formats.md)."""
    rows = lm_experiments.features(data, config, indices)
    width = sum(t["channels"] for t in config["taps"] if t["kind"] == "token_sequence")
    scores = dict(zip(SCORE_COLUMNS, rows[:, width : width + len(SCORE_COLUMNS)].T))
    head = lm_experiments.scores_through_auditor(data, config, indices)
    with open(path, "w") as f:
        for i, index in enumerate(indices):
            text = data.texts[index]
            loss = -float(scores["mean"][i])
            compressed = len(zlib.compress(text.encode("utf-8")))
            row = {"id": f"fortune-{index}", "loss": loss, "zlib_ratio": loss / compressed}
            row.update({name: float(scores[name][i]) for name in FEATURES if name.startswith("min_k")})
            row["head"] = float(head[i])
            f.write(json.dumps(row) + "\n")


def dataset_inference(work, name, suspect, validation, expect, extra=()):
    out_dir = os.path.join(work, f"di-{name}")
    args = [MINT, "dataset-inference", "--suspect", suspect, "--validation", validation, "--rank-feature", "head"]
    args += ["--alpha", ALPHA, "--out-dir", out_dir, *extra] + (["--expect", expect] if expect else [])
    done = sh(*args)
    print(done.stdout, done.stderr, flush=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"mint dataset-inference failed ({done.returncode})")
    report = json.load(open(os.path.join(out_dir, "report.json")))
    report["exit_code"] = done.returncode
    return report


def run_model(name):
    started = time.time()
    lm_experiments.MODEL = model = os.path.join(ROOT, "models", name)
    work = os.path.join(ROOT, "target", "experiments", name)
    os.makedirs(work, exist_ok=True)
    data = lm_experiments.Texts()
    protocol = data.split["protocols"]["same_distribution"]
    config = json.load(open(os.path.join(model, "auditor.json")))
    config["queue"] = {"capacity": 8192}  # whole sets are submitted at once; none may be dropped
    sets = {
        "members": protocol["eval"]["members"],
        "non-members": protocol["eval"]["non_members"],
        "spare": protocol["spare_non_members"],
    }
    paths = {k: os.path.join(work, f"di-{k}.jsonl") for k in sets}
    for k, indices in sets.items():
        table(data, config, indices, paths[k])
    pool = os.path.join(work, "di-pool.jsonl")
    with open(pool, "w") as f:
        for k in ("non-members", "spare"):
            f.write(open(paths[k]).read())
    largest = min(len(sets["members"]), (len(sets["non-members"]) + len(sets["spare"])) // 2)
    sizes = [n for n in SIZES if n <= largest]
    runs = {
        "members": dataset_inference(work, "members", paths["members"], paths["spare"], "evidence"),
        "null": dataset_inference(work, "null", paths["non-members"], paths["spare"], "no-evidence"),
        "power": dataset_inference(
            work,
            "power",
            paths["members"],
            pool,
            None,  # its exit code is the null control's check alone
            ["--members", paths["members"], "--sizes", ",".join(map(str, sizes)), "--draws", DRAWS],
        ),
    }
    return {
        "name": name,
        "sizes": {k: len(v) for k, v in sets.items()},
        "runs": runs,
        "seconds": round(time.time() - started, 1),
    }


def p(x):
    return f"{x:.2g}" if x >= 1e-300 else "< 1e-300"


def rate(r, digits=2):
    return f"{r['rate']:.{digits}f} [{r['low']:.{digits}f}, {r['high']:.{digits}f}]"


def model_lines(r):
    m, null, power = r["runs"]["members"], r["runs"]["null"], r["runs"]["power"]["power"]
    lines = [
        f"#### {r['name']}",
        "",
        f"{r['sizes']['members']} held-out members, {r['sizes']['non-members']} held-out non-members, "
        f"{r['sizes']['spare']} spare non-members.",
        "",
        "| suspect set | texts | dataset inference: p | held-out AUC | rank test on the head: p | AUC |",
        "|---|---|---|---|---|---|",
    ]
    for label, run in [("held-out members", m), ("held-out non-members (null control)", null)]:
        inf, rank = run["inference"], run["rank_test"]
        lines.append(
            f"| {label} | {run['suspect']['samples']} vs {run['validation']['samples']} | {p(inf['p_value'])} | "
            f"{inf['held_out_auc']:.3f} | {p(rank['p_value'])} | {rank['auc']:.3f} |"
        )
    weights = sorted(m["inference"]["weights"].items(), key=lambda kv: -abs(kv[1]))[:4]
    lines += [
        "",
        "The linear model leant most on " + ", ".join(f"`{k}` ({v:+.2f})" for k, v in weights) + " (members' run).",
        "",
        f"Power at p < {ALPHA} ({power['rows'][0]['draws']} draws per size; 95% Wilson intervals); "
        "the null rows draw both sets from the non-member pool:",
        "",
        "| texts per set | dataset inference | its null | rank test on the head | its null |",
        "|---:|---|---|---|---|",
    ]
    for row in power["rows"]:
        lines.append(
            f"| {row['n']} | {rate(row['inference'])} | {rate(row['inference_null'], 3)} | "
            f"{rate(row['rank_test'])} | {rate(row['rank_test_null'], 3)} |"
        )
    needed = power["texts_needed"]
    needed_rank = power.get("texts_needed_rank_test")
    lines += [
        "",
        f"Texts needed for a power of 0.8 at p < {ALPHA}: dataset inference "
        f"{needed if needed else 'more than ' + str(power['rows'][-1]['n'])}, the rank test on the head "
        f"{needed_rank if needed_rank else 'more than ' + str(power['rows'][-1]['n'])}.",
    ]
    return lines


def write_doc(reports):
    lines = []
    for r in reports:
        lines += model_lines(r) + [""]
    lines.append(
        f"Generated by `.venv/bin/python -m mint_research.lm_dataset_inference` in "
        f"{sum(r['seconds'] for r in reports):.0f} s."
    )
    replace_block(
        DOC,
        "research/mint_research/lm_dataset_inference.py",
        "\n".join(lines),
        "### Dataset inference on an owner's texts",
    )


def main():
    if sys.argv[1:] == ["--doc-only"]:  # the tables again from the last run's JSON
        write_doc(json.load(open(JSON)))
        return
    built = sh("cargo", "build", "--release", "-q", "-p", "mint-cli")
    if built.returncode != 0:
        raise SystemExit(built.stderr)
    reports = [run_model(name) for name in lm_experiments.MODELS]
    json.dump(reports, open(JSON, "w"), indent=1)
    write_doc(reports)
    failed = [(r["name"], run) for r in reports for run in ("null", "power") if r["runs"][run]["exit_code"] != 0]
    if failed:
        raise SystemExit(f"a null control or the study's check failed: {failed}")


if __name__ == "__main__":
    main()
