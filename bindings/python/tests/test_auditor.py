"""The Auditor from Python: configurations, tensors read in place, results, errors, closing."""

import json
import os
import threading

import numpy as np
import pytest
import torch
from conftest import MEMORIZING, ROOT, random_taps

import mint_audit


def scores_of(config, submissions):
    """Scores by sample id of `submissions` (a list of (ids, taps)), through a result callback."""
    got = {}
    with mint_audit.Auditor(config, on_results=lambda rs: got.update((r.sample_id, r.score) for r in rs)) as auditor:
        for ids, taps in submissions:
            assert auditor.submit(ids, taps).accepted == len(ids)
        report = auditor.close(10.0)
    assert report.stats.audited == sum(len(ids) for ids, _ in submissions)
    return got


def test_imports_with_version_and_isa():
    assert mint_audit.__version__ == "0.1.0"
    assert mint_audit.REDUCE_ISA in ("avx512f", "avx2", "sse2", "portable", "avx512")
    assert "submit" in mint_audit.Auditor.__doc__ or "submit" in mint_audit.Auditor.submit.__doc__


def test_a_config_dict_with_a_base_dir_equals_the_file(vanilla_config):
    with open(vanilla_config) as f:
        as_dict = json.load(f)
    as_dict["metrics"] = {}
    taps = random_taps(4)
    from_file = scores_of(vanilla_config, [([1, 2, 3, 4], taps)])
    with mint_audit.Auditor(as_dict, base_dir=MEMORIZING) as auditor:
        assert auditor.metrics_address is None
        assert auditor.model == ("fmnist-memorizing", "1")
    from_dict = scores_of_dict(as_dict, taps)
    assert from_dict == from_file


def scores_of_dict(config, taps):
    got = {}
    auditor = mint_audit.Auditor(
        config, on_results=lambda rs: got.update((r.sample_id, r.score) for r in rs), base_dir=MEMORIZING
    )
    auditor.submit([1, 2, 3, 4], taps)
    auditor.close()
    return got


def test_numpy_and_torch_in_every_dtype_and_layout_give_the_same_scores(vanilla_config):
    # Values exact in bfloat16, so that every dtype carries the same numbers.
    taps32 = [torch.from_numpy(t).to(torch.bfloat16).float().numpy() for t in random_taps(3, seed=1)]
    ids = [10, 11, 12]
    reference = scores_of(vanilla_config, [(ids, taps32)])
    variants = {
        "numpy f16": [t.astype(np.float16) for t in taps32],
        "torch f32": [torch.from_numpy(t) for t in taps32],
        "torch bf16": [torch.from_numpy(t).to(torch.bfloat16) for t in taps32],
        "torch f16": [torch.from_numpy(t).half() for t in taps32],
        "torch channels_last": [
            torch.from_numpy(t).to(memory_format=torch.channels_last) if t.ndim == 4 else torch.from_numpy(t)
            for t in taps32
        ],
        "numpy NHWC transposed view": [
            np.ascontiguousarray(t.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) if t.ndim == 4 else t for t in taps32
        ],
        "numpy strided slice": [np.repeat(t, 2, axis=0)[::2] for t in taps32],
        "read-only numpy": [readonly(t) for t in taps32],
        "dict by tap name": {
            name: t
            for (name, _), t in zip([("stage1", 0), ("stage2", 0), ("stage3", 0), ("stage4", 0), ("logits", 0)], taps32)
        },
        "channel maxima": [t.max(axis=(2, 3)) if t.ndim == 4 else t for t in taps32],
    }
    for name, taps in variants.items():
        got = scores_of(vanilla_config, [(ids, taps)])
        assert got.keys() == reference.keys(), name
        for i in ids:
            assert got[i] == pytest.approx(reference[i], abs=1e-6), name


def readonly(array):
    array = array.copy()
    array.flags.writeable = False
    return array


def test_errors_carry_the_status_and_every_lost_sample_is_counted(vanilla_config):
    taps = random_taps(2)
    with mint_audit.Auditor(vanilla_config) as auditor:
        with pytest.raises(mint_audit.InvalidInputError) as e:
            auditor.submit([1], taps)
        assert e.value.status == "MINT_ERR_INVALID_INPUT" and "sample ids" in e.value.message
        with pytest.raises(mint_audit.InvalidInputError, match="<i8"):
            auditor.submit([1, 2], taps[:4] + [np.zeros((2, 10), np.int64)])
        with pytest.raises(mint_audit.InvalidInputError, match="configuration has 5"):
            auditor.submit([1, 2], taps[:4])
        with pytest.raises(mint_audit.InvalidInputError, match="no tap is named 'stage9'"):
            auditor.submit([1, 2], {"stage9": taps[0]})
        with pytest.raises(mint_audit.InvalidInputError, match="__array_interface__ or __dlpack__"):
            auditor.submit([1, 2], [[0.0]] * 5)
        with pytest.raises(mint_audit.InvalidInputError, match="no cohort is named"):
            auditor.submit([1, 2], taps, cohort="nobody")
        bad = [t.copy() for t in taps]
        bad[0][1, 0, 0, 0] = np.nan
        with pytest.raises(mint_audit.NonFiniteError):
            auditor.submit([7, 8], bad)
        report = auditor.close()
        assert report.stats.submitted == report.stats.audited + report.stats.dropped_total
        assert report.stats.dropped["invalid_input"] >= 1 and report.stats.dropped["non_finite"] == 1
        assert not report.timed_out
        with pytest.raises(mint_audit.ClosedError):
            auditor.submit([1, 2], taps)
    with pytest.raises(mint_audit.InvalidConfigError) as e:
        mint_audit.Auditor({"model": {"id": "x"}})
    assert e.value.status == "MINT_ERR_INVALID_CONFIG"
    with pytest.raises(mint_audit.FileError):
        mint_audit.Auditor("/nonexistent/auditor.json")
    assert issubclass(mint_audit.QueueFullError, mint_audit.MintError)


def test_a_torch_tensor_that_requires_grad_is_refused_with_the_reason(vanilla_config):
    taps = [torch.from_numpy(t).requires_grad_() for t in random_taps(2)]
    with mint_audit.Auditor(vanilla_config) as auditor:
        with pytest.raises(mint_audit.InvalidInputError, match="detached"):
            auditor.submit([1, 2], taps)


def test_cohorts_stats_and_evidence(vanilla_config):
    with mint_audit.Auditor(vanilla_config) as auditor:
        auditor.submit(list(range(8)), random_taps(8), cohort="suspect")
        auditor.close()
        assert auditor.stats("suspect").audited == 8
        assert auditor.stats("reference").submitted == 0
        evidence = auditor.evidence("suspect")
        assert evidence["audited"] == 8 and "binomial" in evidence["alarms"]


def test_a_raising_callback_does_not_stop_the_auditor(vanilla_config, monkeypatch):
    calls, reported = [], []
    monkeypatch.setattr("sys.unraisablehook", lambda u: reported.append(u.exc_value))

    def callback(results):
        calls.append(len(results))
        raise RuntimeError("the vendor's callback failed")

    with mint_audit.Auditor(vanilla_config, on_results=callback) as auditor:
        for i in range(3):
            auditor.submit([i], random_taps(1, seed=i))
        report = auditor.close(10.0)
    assert sum(calls) == 3 and report.stats.audited == 3
    assert reported and all("callback failed" in str(e) for e in reported)


def test_closing_from_the_callback_is_refused_and_closing_elsewhere_does_not_deadlock(vanilla_config):
    refused = []

    def callback(results):
        try:
            auditor.close(0.1)
        except mint_audit.ReentrantError as e:
            refused.append(e.status)

    auditor = mint_audit.Auditor(vanilla_config, on_results=callback)
    auditor.submit([1, 2], random_taps(2))
    # Serving threads submit while the main thread closes: the GIL is released while waiting.
    threads = [threading.Thread(target=lambda i=i: safe_submit(auditor, [100 + i], random_taps(1))) for i in range(4)]
    for t in threads:
        t.start()
    report = auditor.close(10.0)
    for t in threads:
        t.join()
    assert refused and refused[0] == "MINT_ERR_REENTRANT"
    assert report.workers_busy == 0
    stats = auditor.stats()
    assert stats.submitted == stats.audited + stats.dropped_total


def safe_submit(auditor, ids, taps):
    try:
        auditor.submit(ids, taps)
    except mint_audit.ClosedError:
        pass


def test_a_slow_callback_holds_close_no_longer_than_its_deadline(vanilla_config):
    import time

    release = threading.Event()
    with open(vanilla_config) as f:
        config = json.load(f)
    config["workers"] = 1
    config["batching"] = {"max_batch": 1, "max_wait_ms": 0}
    config.pop("metrics", None)
    auditor = mint_audit.Auditor(config, on_results=lambda rs: release.wait(), base_dir=MEMORIZING)
    for i in range(4):
        auditor.submit([i], random_taps(1, seed=i))
    started = time.monotonic()
    report = auditor.close(0.2)
    took = time.monotonic() - started
    release.set()
    assert report.timed_out and report.workers_busy == 1
    assert took < 0.2 + mint_audit.CLOSE_GRACE_S + 0.5, took


def test_the_evidence_log_is_signed_chained_and_verifies_independently(vanilla_config, tmp_path):
    """A key made with `cryptography` (PKCS#8 PEM, as `openssl genpkey` writes it) signs the
    auditor's own evidence log, which the independent verifier accepts, and refuses one edit."""
    import subprocess
    import sys

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "operator.pem").write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "operator.pub").write_bytes(public)
    with open(vanilla_config) as f:
        config = json.load(f)
    config["metrics"] = {}
    config["evidence_log"] = {
        "path": str(tmp_path / "evidence.jsonl"),
        "signing_key": str(tmp_path / "operator.pem"),
    }
    with mint_audit.Auditor(config, base_dir=MEMORIZING) as auditor:
        auditor.submit([1, 2, 3, 4], random_taps(4))
        auditor.close(10.0)
    lines = (tmp_path / "evidence.jsonl").read_text().splitlines()
    assert len(lines) == 2, "a snapshot at creation and one at close"
    verifier = os.path.join(ROOT, "examples", "python", "verify_evidence.py")
    log = str(tmp_path / "evidence.jsonl")
    run = subprocess.run(
        [sys.executable, str(verifier), "--key", str(tmp_path / "operator.pub"), log], capture_output=True, text=True
    )
    assert run.returncode == 0 and "2 entries in order" in run.stdout, run.stdout + run.stderr
    (tmp_path / "swapped.jsonl").write_text(lines[1] + "\n" + lines[0] + "\n")
    swapped = str(tmp_path / "swapped.jsonl")
    run = subprocess.run(
        [sys.executable, str(verifier), "--key", str(tmp_path / "operator.pub"), swapped],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "removed or reordered" in run.stdout, run.stdout
