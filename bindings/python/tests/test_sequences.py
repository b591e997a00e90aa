"""Token-sequence taps from Python: [N, T, C] numpy arrays and torch tensors (any layout,
every float dtype) with lengths or an attention mask; the vendor's own pooling gives the same
scores; bad lengths are refused and counted."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import MEMORIZING

import mint_audit

CHANNELS = [16, 32, 64, 128]
POOLINGS = ["max", "mean", "first", "last"]


def sequence_config():
    """The shipped configuration with its four maps as token sequences (same channel counts, so
    the shipped head scores them), one pooling each."""
    with open(os.path.join(MEMORIZING, "auditor.json")) as f:
        config = json.load(f)
    config["metrics"] = {}
    del config["model"]["onnx"], config["model"]["input_shape"]
    for tap, pooling in zip(config["taps"], POOLINGS):
        del tap["spatial"], tap["tensor"]
        tap.update(kind="token_sequence", pooling=pooling, max_tokens=64)
    return config


def scores(submissions):
    got = {}
    auditor = mint_audit.Auditor(
        sequence_config(), base_dir=MEMORIZING, on_results=lambda rs: got.update((r.sample_id, r.score) for r in rs)
    )
    assert [k for _, k in auditor.taps] == ["token_sequence"] * 4 + ["outcome"]
    for ids, taps, kwargs in submissions:
        assert auditor.submit(ids, taps, **kwargs).accepted == len(ids)
    report = auditor.close(10.0)
    assert report.stats.audited == sum(len(ids) for ids, _, _ in submissions)
    return got


def pooled(h, valid, pooling):
    """What the vendor's own torch code gives: [N, C] over the valid tokens."""
    out = []
    for x, v in zip(h, valid):
        x = x[v]
        out.append({"max": x.amax(0), "mean": x.mean(0), "first": x[0], "last": x[-1]}[pooling])
    return torch.stack(out)


def test_ragged_sequences_equal_the_vendors_pooling_in_every_form():
    n, t = 5, 21
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([21, 1, 9, 14, 20])
    valid = torch.arange(t)[None, :] < lengths[:, None]
    # bfloat16-exact values, NaN in the padding (never read).
    hidden = [
        torch.randn(n, t, c, generator=gen).bfloat16().float().masked_fill(~valid[..., None], float("nan"))
        for c in CHANNELS
    ]
    logits = torch.randn(n, 10, generator=gen)
    reference = [pooled(h, valid, p) for h, p in zip(hidden, POOLINGS)] + [logits]
    # Left padding: the same tokens at the end of each row, with its attention mask.
    left = []
    for h in hidden:
        rows = [torch.cat([h[i, lengths[i] :], h[i, : lengths[i]]]) for i in range(n)]
        left.append(torch.stack(rows))
    left_mask = torch.arange(t)[None, :] >= (t - lengths)[:, None]
    submissions = [
        (list(range(0, 5)), reference, {}),
        (list(range(10, 15)), hidden + [logits], {"lengths": lengths}),
        (
            list(range(20, 25)),
            [h.numpy() for h in hidden] + [logits.numpy()],
            {"lengths": lengths.numpy().astype(np.int32)},
        ),
        (list(range(30, 35)), [h.bfloat16() for h in hidden] + [logits], {"lengths": [21, 1, 9, 14, 20]}),
        (list(range(40, 45)), [h.half() for h in hidden] + [logits], {"mask": valid}),
        # [N, C, T] memory, handed over as its [N, T, C] transpose.
        (
            list(range(50, 55)),
            [h.transpose(1, 2).contiguous().transpose(1, 2) for h in hidden] + [logits],
            {"mask": valid.numpy()},
        ),
        (list(range(60, 65)), left + [logits], {"mask": left_mask.long()}),
    ]
    got = scores(submissions)
    for base in range(10, 70, 10):
        for i in range(n):
            # The mean is summed in another order; and the head's scores move by up to 7e-6
            # with their batch (batch_invariance.rs).
            assert got[base + i] == pytest.approx(got[i], abs=5e-5), (base, i)


def test_bad_lengths_and_masks_are_refused_and_counted():
    n, t = 4, 8
    hidden = [torch.zeros(n, t, c) for c in CHANNELS]
    taps = hidden + [torch.zeros(n, 10)]
    auditor = mint_audit.Auditor(sequence_config(), base_dir=MEMORIZING)
    cases = [
        ({"lengths": [8, 0, 1, 2]}, "sample 1 has length 0"),
        ({"lengths": [8, 9, 1, 2]}, "sample 1 has length 9"),
        ({"lengths": [8, 1, 2]}, "3 lengths were given for 4 samples"),
        ({"lengths": torch.ones(n, 2, dtype=torch.long)}, "lengths: give [N] values"),
        ({"lengths": torch.ones(n)}, "lengths: give integers"),
        ({"mask": torch.zeros(n, t, dtype=torch.bool)}, "sample 0 has no valid token"),
        ({"mask": torch.ones(n, t + 1, dtype=torch.bool)}, "a mask of 36 values"),
        ({"mask": torch.ones(n, t, dtype=torch.bool), "lengths": [1] * n}, "not both"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(mint_audit.InvalidInputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            auditor.submit(list(range(n)), taps, **kwargs)
    long = [torch.zeros(n, 65, 16)] + taps[1:]
    with pytest.raises(mint_audit.InvalidInputError, match="exceed the configured max_tokens 64"):
        auditor.submit(list(range(n)), long)
    stats = auditor.close(10.0).stats
    assert stats.dropped["invalid_input"] == n * (len(cases) + 1)
    assert stats.submitted == stats.audited + sum(stats.dropped.values())
