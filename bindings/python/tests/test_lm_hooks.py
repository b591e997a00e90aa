"""A language model audited live from PyTorch: the shipped byte-level transformer
(models/fortunes-lm-memorizing) with forward hooks on its blocks and token scores computed from its
logits; the hooks' scores equal a direct submit of the same tensors, and the torch pooling
(the GPU path) equals the library's."""

import json
import os

import numpy as np
import pytest
import torch

import mint_audit
from mint_audit.torch import attach, pool, token_scores
from mint_research import train_lm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LM = os.path.join(ROOT, "models", "fortunes-lm-memorizing")


@pytest.fixture(scope="module")
def lm():
    model = train_lm.ByteLM()
    model.load_state_dict(torch.load(os.path.join(LM, "model.pt")))
    return model.eval()


def batch(indices):
    texts = json.load(open(os.path.join(ROOT, "models", "data", "fortunes.json")))
    tokens, lengths = train_lm.encode([texts[i] for i in indices])
    return tokens[:, : int(lengths.max())], lengths


def collect(got):
    return lambda rs: got.update((r.sample_id, r.score) for r in rs)


def test_hooks_on_a_language_model_equal_a_direct_submit(lm):
    split = json.load(open(os.path.join(LM, "split.json")))
    chosen = (
        split["protocols"]["same_distribution"]["eval"]["members"][:6]
        + split["protocols"]["same_distribution"]["eval"]["non_members"][:6]
    )
    tokens, lengths = batch(chosen)
    got = {}
    auditor = mint_audit.Auditor(os.path.join(LM, "auditor.json"), on_results=collect(got))
    hooks = attach(lm, auditor, modules={f"block{i + 1}": f"blocks.{i}" for i in range(4)}, outcome=lambda out: out[0])
    with torch.no_grad():
        with hooks.samples(list(range(12)), lengths=lengths):
            lm(tokens)
        mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
        with hooks.samples(list(range(100, 112)), mask=mask):
            lm(tokens)
        hooks.remove()
        logits, hidden = lm(tokens)
    assert hooks.errors == {} and hooks.batches == 2
    scores = token_scores(logits, tokens)
    report = auditor.submit(
        list(range(200, 212)),
        hidden + [scores],
        lengths={**{f"block{i + 1}": lengths for i in range(4)}, "token_scores": lengths - 1},
    )
    assert report.accepted == 12
    stats = auditor.close(10.0).stats
    assert stats.audited == 36 and stats.submitted == 36
    for i in range(12):
        assert got[i] == pytest.approx(got[200 + i], abs=5e-5)
        assert got[100 + i] == pytest.approx(got[200 + i], abs=5e-5)
    # The head tells the members (first six) from the non-members on the whole.
    assert np.mean([got[i] for i in range(6)]) > np.mean([got[i] for i in range(6, 12)])


@pytest.mark.parametrize("pooling", ["max", "mean", "first", "last"])
def test_torch_pooling_equals_the_librarys(lm, pooling):
    config = json.load(open(os.path.join(LM, "auditor.json")))
    for tap in config["taps"]:
        if tap["kind"] == "token_sequence":
            tap["pooling"] = pooling
    tokens, lengths = batch(list(range(20)))
    with torch.no_grad():
        logits, hidden = lm(tokens)
    scores = token_scores(logits, tokens)
    # Another selection, as a mask: as many tokens, counted from the end of each row.
    mask = torch.arange(tokens.shape[1])[None, :] >= (tokens.shape[1] - lengths)[:, None]
    for selection in [{"lengths": lengths}, {"mask": mask}]:
        whole = {**{f"block{i + 1}": next(iter(selection.values())) for i in range(4)}}
        sel = next(iter(selection.values()))
        shifted = (sel - 1) if "lengths" in selection else (sel[:, :-1] & sel[:, 1:])
        kwargs = {k: {**whole, "token_scores": shifted} for k in selection}
        rows, left_out = mint_audit.features(config, hidden + [scores], base_dir=LM, **kwargs)
        assert left_out == []
        rows = np.frombuffer(rows, np.float32).reshape(20, -1)
        pooled = [pool(h, pooling, **selection).numpy() for h in hidden]
        for i, p in enumerate(pooled):
            got = rows[:, 128 * i : 128 * (i + 1)]
            if pooling == "mean":
                np.testing.assert_allclose(got, p, rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(got, p)


def logits_config():
    """The shipped configuration with its token scores replaced by the logits themselves,
    scored by the library (a ``token_logits`` tap: the route C and C++ vendors take)."""
    config = json.load(open(os.path.join(LM, "auditor.json")))
    config["taps"][-1] = {"name": "logits", "channels": 256, "kind": "token_logits", "max_tokens": 128}
    return config


def test_logits_scored_by_the_library_equal_torchs_token_scores(lm):
    tokens, lengths = batch(list(range(40, 56)))
    with torch.no_grad():
        logits, hidden = lm(tokens)
    blocks = {f"block{i + 1}": lengths for i in range(4)}
    expected, left_out = mint_audit.features(
        os.path.join(LM, "auditor.json"),
        hidden + [token_scores(logits, tokens)],
        lengths={**blocks, "token_scores": lengths - 1},
    )
    assert left_out == []
    expected = np.frombuffer(expected, np.float32).reshape(16, -1)
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    for selection in [{"lengths": lengths}, {"mask": mask}]:
        rows, left_out = mint_audit.features(
            logits_config(), hidden + [logits], base_dir=LM, targets=tokens, **selection
        )
        assert left_out == []
        rows = np.frombuffer(rows, np.float32).reshape(16, -1)
        np.testing.assert_array_equal(rows[:, :512], expected[:, :512])
        # PyTorch's float32 log_softmax against the library's float64 sums.
        np.testing.assert_allclose(rows[:, 512:], expected[:, 512:], rtol=1e-4, atol=1e-4)
    # Ids outside the vocabulary where they are scored lose the batch, counted.
    bad = tokens.clone()
    bad[3, 1] = 256
    auditor = mint_audit.Auditor(logits_config(), base_dir=LM)
    with pytest.raises(mint_audit.InvalidInputError, match="token id 256 at position 1"):
        auditor.submit(list(range(16)), hidden + [logits], lengths=lengths, targets=bad)
    with pytest.raises(mint_audit.InvalidInputError, match="need the token ids"):
        auditor.submit(list(range(16)), hidden + [logits], lengths=lengths)
    assert auditor.close(10.0).stats.dropped["invalid_input"] == 32


def test_hooks_hand_the_logits_to_the_library(lm):
    tokens, lengths = batch(list(range(60, 70)))
    got = {}
    scores_auditor = mint_audit.Auditor(os.path.join(LM, "auditor.json"), on_results=collect(got))
    logits_auditor = mint_audit.Auditor(logits_config(), on_results=collect(got), base_dir=LM)
    modules = {f"block{i + 1}": f"blocks.{i}" for i in range(4)}
    for offset, auditor in [(0, scores_auditor), (100, logits_auditor)]:
        hooks = attach(lm, auditor, modules=modules, outcome=lambda out: out[0])
        with torch.no_grad(), hooks.samples(list(range(offset, offset + 10)), lengths=lengths):
            lm(tokens)
        hooks.remove()
        assert hooks.errors == {} and hooks.batches == 1
        assert auditor.close(10.0).stats.audited == 10
    for i in range(10):
        assert got[100 + i] == pytest.approx(got[i], abs=1e-4)


def published_min_k(values, ratio):
    """Min-K% (and, on standardised scores, Min-K%++) as the papers' published code computes it
    (Shi et al., detect-pretrain-code; Zhang et al., mink-plus-plus): the mean of the lowest
    ``int(len * ratio)`` values, in float64; NaN when that is 0."""
    k_length = int(len(values) * ratio)
    topk = np.sort(values)[:k_length]
    return np.mean(topk) if k_length else float("nan")


def test_min_k_against_the_published_code():
    """docs/design.md, "Min-K%: which tokens": ⌈k·n⌉ tokens, at least one; the published code's
    ⌊k·n⌋ wherever k·n is whole, one token more elsewhere."""
    ks = [0.05, 0.1, 0.2, 0.3, 0.5]
    config = {
        "model": {"id": "min-k", "version": "1"},
        "taps": [
            {
                "name": "scores",
                "channels": 3,
                "kind": "token_logprobs",
                "max_tokens": 128,
                "features": [f"min_k:{k}" for k in ks] + [f"min_kpp:{k}" for k in ks],
            }
        ],
        "head": {"kind": "vanilla", "path": "head.onnx", "sha256": "0" * 64},  # rows only: never loaded
    }
    rng = np.random.default_rng(7)
    lengths = np.arange(1, 121)  # every length up to 120, one text each
    scores = np.zeros((len(lengths), 128, 3), np.float32)
    for i, n in enumerate(lengths):
        scores[i, :n, 0] = -rng.exponential(2.0, n)
        scores[i, :n, 1] = -rng.exponential(3.0, n)
        scores[i, :n, 2] = rng.uniform(0.5, 2.0, n)
    rows, left_out = mint_audit.features(config, [scores], lengths=lengths)
    assert left_out == []
    rows = np.frombuffer(rows, np.float32).reshape(len(lengths), 2 * len(ks))
    checked = {"equal": 0, "one more": 0, "published has none": 0}
    for i, n in enumerate(lengths):
        lp, mu, sigma = (scores[i, :n, c].astype(np.float64) for c in range(3))
        for j, k in enumerate(ks):
            for column, values in [(j, lp), (len(ks) + j, (lp - mu) / sigma)]:
                published = published_min_k(values, k)
                whole = round(n * k * 1e6) % 1_000_000 == 0
                if whole:
                    np.testing.assert_allclose(rows[i, column], published, rtol=1e-5, err_msg=f"n={n} k={k}")
                    checked["equal"] += 1
                else:
                    # One token more than the published count (a value where it has none).
                    ours = np.mean(np.sort(values)[: int(n * k) + 1])
                    np.testing.assert_allclose(rows[i, column], ours, rtol=1e-5, err_msg=f"n={n} k={k}")
                    checked["published has none" if np.isnan(published) else "one more"] += 1
    # Each case occurs: whole counts (k = 0.3 at n = 50, 90, 100 among them), and both kinds of
    # difference.
    assert min(checked.values()) >= 40, checked
