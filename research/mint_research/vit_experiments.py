"""Regenerates the vision-transformer section of docs/experiments.md (and
docs/experiments-vit.json): the MINT papers' protocol on the shipped ViT (models/fmnist-vit),
through the `mint` toolkit exactly as for the CNNs — `mint extract` runs the ONNX model in
tract and pools each block's token sequence by its max over the tokens (the Vanilla MINT
feature), `mint train` trains heads, `mint eval` scores them through the library's runtime with
the baselines and the blind control — and ships the all-blocks + outcome head, calibrated.

    .venv/bin/python -m mint_research.vit_experiments        (builds `mint` in release first)

Our recipe only (`standardized`: the paper's literal recipe does not learn on this protocol,
as the CNN tables show).
"""

import json
import os
import shutil
import subprocess
import sys
import time

from mint_research.experiments import (
    MINT,
    PROTOCOLS,
    ROOT,
    SHIPPED_COHORTS,
    WORK,
    calibrate,
    evaluate,
    figures,
    render,
    sh,
)
from mint_research.generated import replace_block

MODEL = "fmnist-vit"
VANILLA = [
    ("block1", "Vanilla, block 1 (token max)"),
    ("block2", "Vanilla, block 2 (token max)"),
    ("block3", "Vanilla, block 3 (token max)"),
    ("block4", "Vanilla, block 4 (token max)"),
    ("block1,block2,block3,block4", "Vanilla, all blocks"),
    ("all", "Vanilla, all blocks + outcome"),
    ("logits", "Vanilla, outcome only (the paper's MIA row)"),
]
# The same blocks pooled by their first token (CLS, which the classifier reads) instead.
CLS = [
    ("block4", "Vanilla, block 4 (CLS token)"),
    ("block1,block2,block3,block4", "Vanilla, all blocks (CLS token)"),
    ("all", "Vanilla, all blocks (CLS token) + outcome"),
]
RECIPE = "standardized"


def cls_descriptor(model_dir, work):
    """The model's descriptor with every block pooled by its first token, beside the work."""
    info = json.load(open(os.path.join(model_dir, "model.json")))
    info["model"]["onnx"] = os.path.join(model_dir, "model.onnx")
    for tap in info["taps"]:
        if tap["kind"] == "token_sequence":
            tap["pooling"] = "first"
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "model-cls.json")
    json.dump(info, open(path, "w"), indent=1)
    return path


def dataset_tests(model_dir):
    """`mint dataset-test` with the shipped, calibrated head: the held-out members against the
    eval non-members (a known-member control: evidence expected), and, as the null control, one
    half of the eval non-members against the other (no evidence expected)."""
    import numpy as np

    from mint_recipes import data as mintdata

    config = os.path.join(model_dir, "auditor.json")
    split = json.load(open(os.path.join(model_dir, "split.json")))["protocols"]["same_distribution"]
    images, _ = mintdata.fashion_mnist("t10k")
    non_members = split["eval"]["non_members"]["indices"]
    work = os.path.join(WORK, MODEL, "dataset-test")
    os.makedirs(work, exist_ok=True)
    half = len(non_members) // 2
    np.save(os.path.join(work, "suspect.npy"), images[non_members[:half]])
    np.save(os.path.join(work, "reference.npy"), images[non_members[half:]])
    out = {}
    for name, args, expect in [
        (
            "held-out members against the eval non-members",
            ["--split", os.path.join(model_dir, "split.json"), "--protocol", "same_distribution"],
            "evidence",
        ),
        (
            "one half of the eval non-members against the other (null control)",
            ["--suspect", os.path.join(work, "suspect.npy"), "--reference", os.path.join(work, "reference.npy")],
            "no-evidence",
        ),
    ]:
        folder = os.path.join(work, expect)
        sh(
            MINT,
            "dataset-test",
            "--config",
            config,
            *args,
            "--expect",
            expect,
            "--out-dir",
            folder,
            stdout=subprocess.DEVNULL,
        )
        report = json.load(open(os.path.join(folder, "report.json")))
        out[name] = {
            "expect": expect,
            "suspect": report.get("suspect", {}).get("samples") if isinstance(report.get("suspect"), dict) else None,
            "rank_test": report["rank_test"],
            "binomial_test": report.get("binomial_test"),
        }
    return out


def render_dataset_tests(tests):
    lines = [
        "#### Dataset-level test (`mint dataset-test`, the shipped calibrated head, alpha 0.01)\n",
        "| suspect set | expected | rank test AUC | rank test p-value | binomial test p-value |",
        "|---|---|---|---|---|",
    ]
    for name, t in tests.items():
        b = t["binomial_test"]
        lines.append(
            f"| {name} | {t['expect']} | {t['rank_test']['auc']:.3f} | {t['rank_test']['p_value']:.2g} | "
            f"{'n/a' if not b else format(b['p_value'], '.2g')} |"
        )
    return "\n".join(lines) + "\n"


def main():
    started = time.time()
    sh("cargo", "build", "--release", "--locked", "-q", "-p", "mint-cli")
    model_dir = os.path.join(ROOT, "models", MODEL)
    desc = os.path.join(model_dir, "model.json")
    info = json.load(open(desc))
    results = {"models": {MODEL: {"training": info["results"], "architecture": info["architecture"], "protocols": {}}}}
    for protocol in PROTOCOLS:
        work = os.path.join(WORK, MODEL, protocol)
        shutil.rmtree(work, ignore_errors=True)
        rows, baselines = [], None
        for pooling, rows_spec in (("max", VANILLA), ("first", CLS)):
            descriptor = desc if pooling == "max" else cls_descriptor(model_dir, work)
            feats = os.path.join(work, f"features-{pooling}")
            sh(
                MINT,
                "extract",
                "--model-json",
                descriptor,
                "--split",
                os.path.join(model_dir, "split.json"),
                "--protocol",
                protocol,
                "--out",
                feats,
                stderr=subprocess.DEVNULL,
            )
            for taps, label in rows_spec:
                name = f"vanilla-{pooling}-{taps.replace(',', '-')}-{RECIPE}"
                head = os.path.join(work, "heads", name + ".onnx")
                config = os.path.join(work, "heads", name + ".json")
                sh(
                    MINT,
                    "train",
                    "--features",
                    feats,
                    "--taps",
                    taps,
                    "--recipe",
                    RECIPE,
                    "--out",
                    head,
                    "--config-out",
                    config,
                    "--model-json",
                    descriptor,
                    stdout=subprocess.DEVNULL,
                )
                report = evaluate(config, model_dir, protocol, os.path.join(work, "eval", name))
                rows.append({"row": label, "recipe": RECIPE, "head": name, **figures(report, "mint")})
                baselines = baselines or report
        for key, label in (
            ("loss", "Loss threshold (needs labels)"),
            ("confidence", "Confidence (max softmax, label-free)"),
            ("blind", "Blind control (raw inputs only, never the model)"),
        ):
            f = figures(baselines, key)
            rows.append({"row": label, "recipe": "baseline", "head": None, **(f or {"auc": None})})
        results["models"][MODEL]["protocols"][protocol] = {
            "description": baselines["data"]["description"],
            "distribution_shift": baselines["distribution_shift"],
            "rows": rows,
        }
    # The shipped head: all blocks + outcome, calibrated for a 1% FPR like the CNNs'.
    sh(
        MINT,
        "train",
        "--features",
        os.path.join(WORK, MODEL, "same_distribution", "features-max"),
        "--recipe",
        RECIPE,
        "--out",
        os.path.join(model_dir, "head.onnx"),
        "--config-out",
        os.path.join(model_dir, "auditor.json"),
        "--model-json",
        desc,
        "--metrics-listen",
        "127.0.0.1:0",
        *SHIPPED_COHORTS,
        stdout=subprocess.DEVNULL,
    )
    calibrate(os.path.join(model_dir, "auditor.json"), model_dir, os.path.join(WORK, MODEL, "calibration"))
    results["dataset_test"] = dataset_tests(model_dir)
    results["seconds"] = round(time.time() - started)
    results["command"] = ".venv/bin/python -m mint_research.vit_experiments"
    with open(os.path.join(ROOT, "docs", "experiments-vit.json"), "w") as f:
        json.dump(results, f, indent=1)
    replace_block(
        os.path.join(ROOT, "docs", "experiments.md"),
        "research/mint_research/vit_experiments.py",
        render(results) + "\n" + render_dataset_tests(results["dataset_test"]),
        "## Vision transformer",
    )
    print(f"done in {results['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
