"""PyTorch forward hooks on the shipped models: the same scores as `mint eval`, which runs the
ONNX model in the library's own runtime."""

import csv
import os
import subprocess

import fmnist_model  # examples/python, importable from the checkout's venv (scripts/setup.sh)
import numpy as np
import pytest
import torch
from conftest import MEMORIZING, read_idx_images

import mint_audit
from mint_audit.torch import attach, module_for_tensor

MEMBERS = os.path.join(MEMORIZING, "demo-members-idx3-ubyte")
NON_MEMBERS = os.path.join(MEMORIZING, "demo-non-members-idx3-ubyte")
LIMIT = 48
NON_MEMBER_IDS = 1 << 32  # mint eval's ids for non-members start here


def test_onnx_scopes_name_torch_modules():
    assert module_for_tensor("/layer1/layer1.0/conv2/Conv_output_0") == "layer1.0.conv2"
    assert module_for_tensor("/layer2/layer2.0/shortcut/shortcut.0/Conv_output_0") == "layer2.0.shortcut.0"
    assert module_for_tensor("/stem/stem.0/Conv_output_0") == "stem.0"
    assert module_for_tensor("logits") is None


def eval_scores(mint_bin, config, tmp_path):
    out = tmp_path / "eval"
    subprocess.run(
        [
            mint_bin,
            "eval",
            "--config",
            config,
            "--members",
            MEMBERS,
            "--non-members",
            NON_MEMBERS,
            "--limit",
            str(LIMIT),
            "--out-dir",
            str(out),
            "--allow-shift",
            "--bootstrap",
            "10",
        ],
        check=True,
        capture_output=True,
    )
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    return {(r["set"], int(r["index"])): float(r["score"]) for r in rows}


def hook_scores(config, batch):
    model = fmnist_model.load(MEMORIZING)
    scores = {}
    auditor = mint_audit.Auditor(config, on_results=lambda rs: scores.update((r.sample_id, r.score) for r in rs))
    hooks = attach(model, auditor)
    for path, base in ((MEMBERS, 0), (NON_MEMBERS, NON_MEMBER_IDS)):
        images = torch.from_numpy(read_idx_images(path)[:LIMIT].astype(np.float32) / 255.0).unsqueeze(1)
        for start in range(0, LIMIT, batch):
            ids = list(range(base + start, base + min(start + batch, LIMIT)))
            with hooks.samples(ids), torch.no_grad():
                model(images[start : start + batch])
    report = auditor.close(30.0)
    hooks.remove()
    assert hooks.errors == {} and hooks.batches == 2 * ((LIMIT + batch - 1) // batch)
    assert report.stats.audited == 2 * LIMIT
    return {("member" if i < NON_MEMBER_IDS else "non_member", i % NON_MEMBER_IDS): s for i, s in scores.items()}


# Batch 1 hands every map over in place; at batch 16 every map is past REDUCE_IN_HOOK_BYTES and
# reduced in its hook (the CNN head takes whole maps, which are never reduced).
@pytest.mark.parametrize("config,batch", [("auditor.json", 1), ("auditor.json", 16), ("auditor-cnn.json", 16)])
def test_hook_scores_equal_mint_evals(mint_bin, tmp_path, config, batch):
    config = os.path.join(MEMORIZING, config)
    want = eval_scores(mint_bin, config, tmp_path)
    got = hook_scores(config, batch=batch)
    assert got.keys() == want.keys()
    worst = max(abs(got[k] - want[k]) for k in want)
    assert worst <= 1e-5, f"hook scores differ from mint eval's by up to {worst:.2e}"
    # Not a constant: the scores separate samples.
    assert np.std(list(got.values())) > 1e-3


def test_channel_maxima_are_the_maps_maxima_in_any_layout_and_dtype(vanilla_config):
    from mint_audit.torch import REDUCE_IN_HOOK_BYTES

    assert 16 * 16 * 28 * 28 * 4 >= REDUCE_IN_HOOK_BYTES > 16 * 28 * 28 * 4  # what the test above relies on
    torch.manual_seed(0)
    maps = torch.randn(3, 16, 28, 28) * 5
    with mint_audit.Auditor(vanilla_config) as auditor:
        for given in (maps, maps.to(memory_format=torch.channels_last), maps.to(torch.bfloat16), maps.half()):
            got = torch.frombuffer(auditor.channel_maxima("stage1", given), dtype=torch.float32).view(3, 16)
            assert torch.equal(got, given.float().amax(dim=(2, 3))), given.dtype
        bad = maps.clone()
        bad[1, 7, 3, 3] = float("nan")
        got = torch.frombuffer(auditor.channel_maxima("stage1", bad), dtype=torch.float32).view(3, 16)
        assert torch.isnan(got[1]).all() and torch.equal(got[0], maps[0].amax(dim=(1, 2)))
        with pytest.raises(mint_audit.InvalidInputError, match="activation map"):
            auditor.channel_maxima("logits", torch.zeros(3, 10))
        with pytest.raises(mint_audit.InvalidInputError, match="no tap is named"):
            auditor.channel_maxima("nowhere", maps)


def test_a_non_finite_map_reduced_in_its_hook_is_dropped_and_counted(vanilla_config):
    model = fmnist_model.load(MEMORIZING)
    with mint_audit.Auditor(vanilla_config) as auditor:
        hooks = attach(model, auditor)
        images = torch.rand(16, 1, 28, 28)
        images[5] = float("nan")
        with hooks.samples(list(range(16))), torch.no_grad():
            model(images)
        report = auditor.close(30.0)
        hooks.remove()
    assert hooks.errors == {"MINT_ERR_NON_FINITE": 1}
    assert report.stats.audited == 15 and report.stats.dropped_total == 1


def test_hooks_never_raise_into_the_forward_pass(vanilla_config):
    model = fmnist_model.load(MEMORIZING)
    auditor = mint_audit.Auditor(vanilla_config)
    hooks = attach(model, auditor)
    auditor.close()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 28, 28))  # the auditor is closed: counted, not raised
    assert out.shape == (2, 10)
    assert hooks.errors == {"MINT_ERR_CLOSED": 1}
    hooks.remove()


def test_a_module_that_does_not_exist_is_named(vanilla_config):
    model = fmnist_model.load(MEMORIZING)
    with mint_audit.Auditor(vanilla_config) as auditor:
        with pytest.raises(ValueError, match="no module named 'nowhere'"):
            attach(model, auditor, modules={"stage1": "nowhere"})
