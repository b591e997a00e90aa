"""Regenerates docs/experiments.md and docs/experiments.json: the MINT papers' experiments on
the shipped audited models, in both protocols, with the controls; and the shipped heads.

    .venv/bin/python -m mint_research.experiments            (builds `mint` in release first)

For each audited model (memorizing, generalizing) and protocol (same_distribution,
cross_dataset), it extracts the auxiliary auditable data with `mint extract`, trains heads
with `mint train` (the paper's recipe and ours), and scores each through the library's own
runtime with `mint eval` (1,000 bootstrap rounds, seed 0). Rows: Vanilla per stage, all
stages, all stages plus outcome, outcome only (the paper's "MIA" row), CNN on stages 1 and 2,
and the baselines every eval report carries: loss threshold, label-free confidence, and the
blind distribution-shift control. The winning Vanilla recipe's all-stages-plus-outcome head on
the same-distribution protocol becomes each model's shipped head (models/*/head.onnx,
auditor.json), and the stage-1 CNN head of the memorizing model its shipped CNN head.

Needs what scripts/setup.sh installs. Deterministic: the same machine kind gives the same
files; the run time is written into the outputs.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from mint_research.generated import replace_block

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINT = os.path.join(ROOT, "target", "release", "mint")
WORK = os.path.join(ROOT, "target", "experiments")
MODELS = ["fmnist-memorizing", "fmnist-generalizing"]
PROTOCOLS = ["same_distribution", "cross_dataset"]
VANILLA = [
    ("stage1", "Vanilla, stage 1"),
    ("stage2", "Vanilla, stage 2"),
    ("stage3", "Vanilla, stage 3"),
    ("stage4", "Vanilla, stage 4"),
    ("stage1,stage2,stage3,stage4", "Vanilla, all stages"),
    ("all", "Vanilla, all stages + outcome"),
    ("logits", "Vanilla, outcome only (the paper's MIA row)"),
]
CNN = [("stage1", "CNN, stage 1"), ("stage2", "CNN, stage 2")]
RECIPES = ["paper", "standardized"]
CNN_TRAIN_LIMIT = 2500  # samples per class for CNN heads (the paper's small-data regime)


def sh(*args, **kw):
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run([str(a) for a in args], check=True, cwd=ROOT, **kw)


def figures(report, key):
    """The headline figures of one scorer in an eval report, or None."""
    f = report["mint"] if key == "mint" else report["baselines"].get(key)
    if f is None or "skipped" in f:
        return None

    def pick(k):
        return None if f.get(k) is None else {x: round(f[k][x], 4) for x in ("value", "low", "high")}

    return {
        "balanced_accuracy": pick("balanced_accuracy"),
        "auc": pick("auc"),
        "tpr_at_1pct_fpr": pick("tpr_at_1pct_fpr"),
        "tpr_at_0_1pct_fpr": pick("tpr_at_0_1pct_fpr"),
        "members": f["members"],
        "non_members": f["non_members"],
    }


def evaluate(config, model_dir, protocol, out_dir):
    cmd = [
        MINT,
        "eval",
        "--config",
        config,
        "--split",
        os.path.join(model_dir, "split.json"),
        "--protocol",
        protocol,
        "--out-dir",
        out_dir,
    ]
    if protocol == "cross_dataset":
        cmd.append("--allow-shift")
    sh(*cmd, stdout=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "report.json")) as f:
        return json.load(f)


def main():
    started = time.time()
    sh("cargo", "build", "--release", "--locked", "-q", "-p", "mint-cli", "-p", "mint-backend-cpu")
    cpu_plugin = os.path.join(ROOT, "target", "release", "libmint_backend_cpu.so")
    results = {"protocol_notes": {}, "models": {}, "shipped": {}}
    for model in MODELS:
        model_dir = os.path.join(ROOT, "models", model)
        desc = os.path.join(model_dir, "model.json")
        with open(desc) as f:
            info = json.load(f)
        results["models"][model] = {
            "training": info.get("results", {}),
            "architecture": info.get("architecture"),
            "protocols": {},
        }
        for protocol in PROTOCOLS:
            work = os.path.join(WORK, model, protocol)
            shutil.rmtree(work, ignore_errors=True)
            feats = os.path.join(work, "features")
            sh(
                MINT,
                "extract",
                "--model-json",
                desc,
                "--split",
                os.path.join(model_dir, "split.json"),
                "--protocol",
                protocol,
                "--out",
                feats,
                stderr=subprocess.DEVNULL,
            )
            rows = []
            baselines = None
            for taps, label in VANILLA:
                for recipe in RECIPES:
                    name = f"vanilla-{taps.replace(',', '-')}-{recipe}"
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
                        recipe,
                        "--out",
                        head,
                        "--config-out",
                        config,
                        "--model-json",
                        desc,
                        stdout=subprocess.DEVNULL,
                    )
                    report = evaluate(config, model_dir, protocol, os.path.join(work, "eval", name))
                    rows.append({"row": label, "recipe": recipe, "head": name, **figures(report, "mint")})
                    baselines = baselines or report
            for tap, label in CNN:
                maps = os.path.join(work, f"maps-{tap}")
                sh(
                    MINT,
                    "extract",
                    "--model-json",
                    desc,
                    "--split",
                    os.path.join(model_dir, "split.json"),
                    "--protocol",
                    protocol,
                    "--full-map",
                    tap,
                    "--limit",
                    CNN_TRAIN_LIMIT,
                    "--out",
                    maps,
                    stderr=subprocess.DEVNULL,
                )
                for recipe in RECIPES:
                    name = f"cnn-{tap}-{recipe}"
                    head = os.path.join(work, "heads", name + ".onnx")
                    config = os.path.join(work, "heads", name + ".json")
                    sh(
                        MINT,
                        "train",
                        "--features",
                        maps,
                        "--recipe",
                        recipe,
                        "--out",
                        head,
                        "--config-out",
                        config,
                        "--model-json",
                        desc,
                        "--backend-library",
                        cpu_plugin,
                        stdout=subprocess.DEVNULL,
                    )
                    report = evaluate(config, model_dir, protocol, os.path.join(work, "eval", name))
                    rows.append({"row": label, "recipe": recipe, "head": name, **figures(report, "mint")})
                shutil.rmtree(maps)  # hundreds of MB of maps; the heads and reports stay
            for key, label in (
                ("loss", "Loss threshold (needs labels)"),
                ("confidence", "Confidence (max softmax, label-free)"),
                ("blind", "Blind control (raw inputs only, never the model)"),
            ):
                f = figures(baselines, key)
                rows.append({"row": label, "recipe": "baseline", "head": None, **(f or {"auc": None})})
            results["models"][model]["protocols"][protocol] = {
                "description": baselines["data"]["description"],
                "distribution_shift": baselines["distribution_shift"],
                "rows": rows,
            }

        # The shipped heads: the better Vanilla recipe (on held-out data) for all stages + outcome.
        same = results["models"][model]["protocols"]["same_distribution"]["rows"]
        full = {r["recipe"]: r for r in same if r["row"] == "Vanilla, all stages + outcome"}
        best = max(RECIPES, key=lambda r: full[r]["auc"]["value"])
        heads = os.path.join(WORK, model, "same_distribution", "heads")
        sh(
            MINT,
            "train",
            "--features",
            os.path.join(WORK, model, "same_distribution", "features"),
            "--recipe",
            best,
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
        calibrate(os.path.join(model_dir, "auditor.json"), model_dir, os.path.join(WORK, model, "calibration"))
        with (
            open(os.path.join(heads, f"vanilla-all-{best}.onnx"), "rb") as a,
            open(os.path.join(model_dir, "head.onnx"), "rb") as b,
        ):
            assert a.read() == b.read(), "training is not deterministic: the shipped head differs from the table's"
        results["shipped"][model] = {
            "head": f"models/{model}/head.onnx",
            "recipe": best,
            "row": "Vanilla, all stages + outcome",
            "protocol": "same_distribution",
            "auc": full[best]["auc"],
        }
    # The memorizing model's CNN head (stage 1, our recipe) for the CNN path's demo and tests.
    model_dir = os.path.join(ROOT, "models", "fmnist-memorizing")
    maps = os.path.join(WORK, "cnn-shipped-maps")
    sh(
        MINT,
        "extract",
        "--model-json",
        os.path.join(model_dir, "model.json"),
        "--split",
        os.path.join(model_dir, "split.json"),
        "--protocol",
        "same_distribution",
        "--full-map",
        "stage1",
        "--limit",
        CNN_TRAIN_LIMIT,
        "--out",
        maps,
        stderr=subprocess.DEVNULL,
    )
    sh(
        MINT,
        "train",
        "--features",
        maps,
        "--recipe",
        "standardized",
        "--out",
        os.path.join(model_dir, "cnn_head_stage1.onnx"),
        "--config-out",
        os.path.join(model_dir, "auditor-cnn.json"),
        "--model-json",
        os.path.join(model_dir, "model.json"),
        "--metrics-listen",
        "127.0.0.1:0",
        "--backend-library",
        "libmint_backend_cpu.so",
        *SHIPPED_COHORTS,
        stdout=subprocess.DEVNULL,
    )
    calibrate(os.path.join(model_dir, "auditor-cnn.json"), model_dir, os.path.join(WORK, "calibration-cnn"))
    shutil.rmtree(maps)

    # The evidence tables of docs/evidence.md, on the freshly calibrated configurations.
    sh(
        MINT,
        "evidence-study",
        "--model",
        os.path.join(ROOT, "models", "fmnist-memorizing"),
        "--model",
        os.path.join(ROOT, "models", "fmnist-generalizing"),
        "--json",
        os.path.join(ROOT, "docs", "evidence.json"),
        "--doc",
        os.path.join(ROOT, "docs", "evidence.md"),
        stdout=subprocess.DEVNULL,
    )

    results["seconds"] = round(time.time() - started)
    results["command"] = ".venv/bin/python -m mint_research.experiments"
    with open(os.path.join(ROOT, "docs", "experiments.json"), "w") as f:
        json.dump(results, f, indent=1)
    # The tables replace the generated section of docs/experiments.md; the prose around stays.
    replace_block(
        os.path.join(ROOT, "docs", "experiments.md"),
        "research/mint_research/experiments.py",
        render(results),
        "## Tables",
        end="<!-- END GENERATED -->",
    )
    print(f"done in {results['seconds']} s")


# The shipped configurations declare the demo's cohorts: known non-members and a suspect set.
SHIPPED_COHORTS = ("--cohort", "reference", "--cohort", "suspect")


def calibrate(config, model_dir, out_dir):
    """Calibrates a shipped configuration in place: threshold for a 1% FPR on half the eval
    non-members of the same-distribution protocol, checked on the other half."""
    sh(
        MINT,
        "eval",
        "--config",
        config,
        "--split",
        os.path.join(model_dir, "split.json"),
        "--protocol",
        "same_distribution",
        "--out-dir",
        out_dir,
        "--calibrate",
        "0.01",
        "--write-config",
        config,
        "--allow-shift",
        stdout=subprocess.DEVNULL,
    )


def cell(x):
    if not x:
        return "n/a"
    return f"{x['value']:.3f} [{x['low']:.3f}, {x['high']:.3f}]"


def render(results):
    out = []
    for model, m in results["models"].items():
        t = m["training"]
        out.append(f"### {model}\n")
        out.append(
            f"{m['architecture']}; train accuracy {t.get('train_accuracy')}, test accuracy {t.get('test_accuracy')}.\n"
        )
        for protocol, p in m["protocols"].items():
            shift = p["distribution_shift"]
            out.append(f"#### {protocol}: {p['description']}\n")
            out.append(
                f"Blind control AUC {cell(shift['blind_auc'])}: "
                + (
                    "**the sets differ in distribution; membership figures of this protocol are not to be trusted.**"
                    if shift["detected"]
                    else "no distribution shift found."
                )
                + "\n"
            )
            out.append("| AAD | recipe | balanced accuracy | ROC AUC | TPR @ 1% FPR | TPR @ 0.1% FPR |")
            out.append("|---|---|---|---|---|---|")
            for r in p["rows"]:
                out.append(
                    f"| {r['row']} | {r['recipe']} | {cell(r.get('balanced_accuracy'))} | {cell(r.get('auc'))} | "
                    f"{cell(r.get('tpr_at_1pct_fpr'))} | {cell(r.get('tpr_at_0_1pct_fpr'))} |"
                )
            out.append("")
    out.append(f"Generated by `{results['command']}` in {results['seconds']} s.\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
