"""The conformance kit from a PyTorch serving path: `mint conformance write` makes the kit, the
shipped model in PyTorch feeds its images through the hooks with recording on, and
`mint conformance check` passes; hooking a tap to the wrong layer fails, naming the tap."""

import json
import os
import subprocess

import fmnist_model  # examples/python, importable from the checkout's venv (scripts/setup.sh)
import numpy as np
import torch
from conftest import MEMORIZING, read_idx_images

import mint_audit
from mint_audit.torch import attach


def serve_kit(kit, recording, modules=None):
    with open(os.path.join(MEMORIZING, "auditor.json")) as f:
        config = json.load(f)
    config.pop("metrics", None)
    config["conformance"] = {"record": str(recording)}
    model = fmnist_model.load(MEMORIZING)
    images = torch.from_numpy(read_idx_images(str(kit / "images-idx3-ubyte")).astype(np.float32) / 255.0).unsqueeze(1)
    with mint_audit.Auditor(config, base_dir=MEMORIZING) as auditor:
        hooks = attach(model, auditor, modules=modules)
        for start in range(0, len(images), 8):
            with hooks.samples(range(start, min(start + 8, len(images)))), torch.no_grad():
                model(images[start : start + 8])
        hooks.remove()
        assert hooks.errors == {}


def check(mint_bin, kit, recording):
    return subprocess.run(
        [mint_bin, "conformance", "check", "--kit", str(kit), "--recording", str(recording)],
        capture_output=True,
        text=True,
    )


def test_the_kit_passes_the_hooks_and_catches_a_wrong_layer(mint_bin, tmp_path):
    kit = tmp_path / "kit"
    subprocess.run(
        [
            mint_bin,
            "conformance",
            "write",
            "--config",
            os.path.join(MEMORIZING, "auditor.json"),
            "--data",
            os.path.join(MEMORIZING, "demo-members-idx3-ubyte"),
            "--samples",
            "16",
            "--out",
            str(kit),
        ],
        check=True,
        capture_output=True,
    )
    serve_kit(kit, tmp_path / "right.json")
    result = check(mint_bin, kit, tmp_path / "right.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout

    serve_kit(kit, tmp_path / "wrong.json", modules={"stage3": "layer3.0.conv1"})
    result = check(mint_bin, kit, tmp_path / "wrong.json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[FAIL] tap 'stage3'" in result.stdout and "[pass] tap 'stage2'" in result.stdout, result.stdout
