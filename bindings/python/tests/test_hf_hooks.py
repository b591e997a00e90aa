"""The PyTorch hooks on Hugging Face ``transformers`` models (random init from configs, no hub
download), called the ways serving code calls them: keyword arguments, a tokenizer's output,
left and right padding, ``ModelOutput`` objects without an ``outcome`` picker, ``generate()`` with
and without a KV cache. Each call style's scores equal a direct ``submit`` of the same tensors;
injected failures are counted and logged once, and never reach the forward."""

import hashlib
import logging
import warnings

import numpy as np
import pytest
import torch
from conftest import require

import mint_audit
import mint_audit.torch as mt
from mint_audit.torch import attach, token_scores, transformer_layers

try:
    import tokenizers  # noqa: F401
    import transformers
except ImportError:
    require("transformers and tokenizers (scripts/setup.sh installs them into .venv)")
warnings.filterwarnings("ignore", module="transformers")

TEXTS = [
    "A journey of a thousand miles begins with a single step.",
    "To be or not to be.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "Hello.",
    "Pack my box with five dozen liquor jugs.",
    "All that glitters is not gold; all who wander are not lost.",
]
WIDTH = 32
FEATURES = ["mean", "min_k:0.2", "min_kpp:0.2"]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer trained here (``tokenizers``), served as transformers serves one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS * 4, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )


def causal_lm(family, vocab):
    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=WIDTH, n_layer=2, n_head=2)
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=WIDTH,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        model = transformers.LlamaForCausalLM(config)
    return model.eval()


def head(tmp_path, features):
    """A Vanilla head ``[N, F] -> [N, 1]`` (sigmoid of a fixed linear map) as an ONNX file, and its sha256."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = (np.random.default_rng(1).standard_normal((features, 1)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["score"])],
        "head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(weights, "w")],
    )
    path = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def config(tmp_path, scores=True, pooling="mean"):
    """One block's hidden states pooled over the valid tokens, and (``scores``) the Min-K% family of
    the token scores."""
    taps = [{"name": "block0", "channels": WIDTH, "kind": "token_sequence", "pooling": pooling, "max_tokens": 64}]
    if scores:
        taps.append(
            {"name": "token_scores", "channels": 3, "kind": "token_logprobs", "max_tokens": 64, "features": FEATURES}
        )
    path, digest = head(tmp_path, WIDTH + (len(FEATURES) if scores else 0))
    return {
        "model": {"id": "hf", "version": "1"},
        "taps": taps,
        "head": {"kind": "vanilla", "path": str(path), "sha256": digest},
        "workers": 1,
    }


def auditor_for(cfg):
    got = {}
    auditor = mint_audit.Auditor(cfg, on_results=lambda rs: got.update((r.sample_id, r.score) for r in rs))
    return auditor, got


def direct_scores(model, cfg, ids, call, block):
    """The scores of a direct submit of the tensors the hooks should capture, from an unhooked forward."""
    auditor, got = auditor_for(cfg)
    with torch.no_grad():
        out = model(**call, output_hidden_states=True)
    mask = call["attention_mask"]
    tensors, masks = [out.hidden_states[block + 1]], {"block0": mask}
    if len(cfg["taps"]) > 1:
        tensors.append(token_scores(out.logits, call["input_ids"]))
        m = mask != 0
        masks["token_scores"] = m[:, :-1] & m[:, 1:]
    auditor.submit(ids, tensors, mask=masks)
    assert auditor.close(10.0).stats.audited == len(ids)
    return got


def encode(tokenizer, side):
    tokenizer.padding_side = side
    return dict(tokenizer(TEXTS, return_tensors="pt", padding=True))


def positions(mask):
    """What ``generate()`` passes: each token's position among the valid ones."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_keyword_calls_on_tokenizer_output_equal_a_direct_submit(tmp_path, tokenizer, family):
    model = causal_lm(family, len(tokenizer))
    cfg = config(tmp_path)
    scores = {}
    for side, first in [("right", 0), ("left", 100)]:
        call = encode(tokenizer, side)
        call["position_ids"] = positions(call["attention_mask"])
        ids = list(range(first, first + len(TEXTS)))
        want = direct_scores(model, cfg, ids, call, block=0)
        auditor, got = auditor_for(cfg)
        hooks = attach(model, auditor, modules={"block0": transformer_layers(model)[0]})
        with torch.no_grad(), hooks.samples(ids):  # no lengths or mask: the call's attention_mask
            out = model(**call)  # a ModelOutput; its logits found without an `outcome` picker
        hooks.remove()
        assert isinstance(out, transformers.utils.ModelOutput)
        assert auditor.close(10.0).stats.audited == len(TEXTS)
        assert hooks.errors == {} and hooks.batches == 1 and hooks.skipped == {}
        for i in ids:
            assert got[i] == pytest.approx(want[i], abs=1e-6), (side, i)
        scores[side] = [got[i] for i in ids]
    # The same texts padded on the other side: the valid tokens alone were read.
    np.testing.assert_allclose(scores["left"], scores["right"], atol=2e-5)
    assert np.std(scores["right"]) > 1e-4  # the scores tell the texts apart


def test_positional_and_keyword_calls_agree(tmp_path, tokenizer):
    model = causal_lm("gpt2", len(tokenizer))
    cfg = config(tmp_path)
    call = encode(tokenizer, "right")
    auditor, got = auditor_for(cfg)
    hooks = attach(model, auditor, modules={"block0": "transformer.h.0"})
    with torch.no_grad():
        with hooks.samples(list(range(6))):
            model(input_ids=call["input_ids"], attention_mask=call["attention_mask"])
        with hooks.samples(list(range(10, 16)), mask=call["attention_mask"]):
            model(call["input_ids"])
    hooks.remove()
    auditor.close(10.0)
    assert hooks.errors == {} and hooks.batches == 2
    for i in range(6):
        assert got[i] == got[10 + i]


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_audits_the_prompt_once(tmp_path, tokenizer, use_cache):
    model = causal_lm("gpt2", len(tokenizer))
    cfg = config(tmp_path)
    call = encode(tokenizer, "left")  # as generation pads
    ids = list(range(len(TEXTS)))
    want = direct_scores(model, cfg, ids, {**call, "position_ids": positions(call["attention_mask"])}, block=0)
    auditor, got = auditor_for(cfg)
    hooks = attach(model, auditor, modules={"block0": transformer_layers(model)[0]})
    with torch.no_grad(), hooks.samples(ids):
        generated = model.generate(
            **call, max_new_tokens=4, do_sample=False, use_cache=use_cache, pad_token_id=tokenizer.pad_token_id
        )
    hooks.remove()
    assert generated.shape[1] == call["input_ids"].shape[1] + 4
    assert auditor.close(10.0).stats.audited == len(TEXTS)
    assert hooks.errors == {} and hooks.batches == 1
    assert hooks.skipped == {"decode_step" if use_cache else "repeated_ids": 3}
    for i in ids:
        assert got[i] == pytest.approx(want[i], abs=1e-5)


def test_injected_failures_are_counted_logged_once_and_never_reach_the_forward(
    tmp_path, tokenizer, caplog, monkeypatch
):
    model = causal_lm("gpt2", len(tokenizer))
    call = encode(tokenizer, "right")
    with torch.no_grad():
        plain = model(**call).logits
    auditor, _ = auditor_for(config(tmp_path))
    hooks = attach(model, auditor, modules={"block0": "transformer.h.0"})

    def forward_twice(**extra):
        for _ in range(2):
            with torch.no_grad():
                out = model(**{**call, **extra})
            assert torch.equal(out.logits, plain)

    caplog.set_level(logging.WARNING, logger="mint_audit.torch")
    # The auditor's submit raising what no auditor raises.
    real = hooks.auditor

    class Broken:
        def submit(self, *_args, **_kwargs):
            raise RuntimeError("injected")

    hooks.auditor = Broken()
    forward_twice()
    hooks.auditor = real
    # The token scores failing where the logits are.
    monkeypatch.setattr(mt, "token_scores", lambda *_: (_ for _ in ()).throw(MemoryError("injected")))
    forward_twice()
    monkeypatch.undo()
    # No input ids to score (the model called with embeddings).
    embeds = model.get_input_embeddings()(call["input_ids"])
    forward_twice(input_ids=None, inputs_embeds=embeds)
    # A capture hook failing inside the model's forward.
    monkeypatch.setattr(hooks, "_pooling", None)
    monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda _t: (_ for _ in ()).throw(KeyError("injected"))))
    forward_twice()
    monkeypatch.undo()
    # A closed auditor.
    auditor.close()
    forward_twice()
    hooks.remove()
    assert hooks.errors == {
        "HOOK_FAILED:RuntimeError": 2,
        "HOOK_FAILED:MemoryError": 2,
        "NO_INPUT_IDS": 2,
        "HOOK_FAILED:KeyError": 2,
        "MINT_ERR_CLOSED": 2,
    }
    assert hooks.batches == 0
    logged = [r.getMessage() for r in caplog.records if r.name == "mint_audit.torch"]
    assert len(logged) == 5, logged  # once per kind
    assert all("further ones are counted" in m for m in logged)


def test_a_tapped_module_that_does_not_run_is_counted(tmp_path, tokenizer):
    model = causal_lm("gpt2", len(tokenizer))
    model.unused = torch.nn.Identity()
    auditor, _ = auditor_for(config(tmp_path))
    hooks = attach(model, auditor, modules={"block0": "unused"})
    with torch.no_grad():
        model(**encode(tokenizer, "right"))
    hooks.remove()
    auditor.close()
    assert hooks.errors == {"MISSING_TAP": 1}


def test_remove_restores_the_model(tmp_path, tokenizer):
    model = causal_lm("gpt2", len(tokenizer))
    forward = model.forward
    auditor, _ = auditor_for(config(tmp_path))
    hooks = attach(model, auditor, modules={"block0": "transformer.h.0"})
    hooks.remove()
    auditor.close()
    assert "forward" not in model.__dict__ and model.forward == forward
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not model.transformer.h[0]._forward_hooks


def test_transformer_layers_from_the_config():
    torch.manual_seed(0)
    gpt2 = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=3, n_head=2)
    llama = dict(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
    )
    bert = transformers.BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32
    )
    cases = [
        (transformers.GPT2LMHeadModel(gpt2), "transformer.h"),
        (transformers.GPT2Model(gpt2), "h"),
        (transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama)), "model.layers"),
        (transformers.MistralForCausalLM(transformers.MistralConfig(**llama)), "model.layers"),
        (transformers.BertModel(bert), "encoder.layer"),
        (transformers.BertForSequenceClassification(bert), "bert.encoder.layer"),
    ]
    for model, prefix in cases:
        assert transformer_layers(model) == [f"{prefix}.{i}" for i in range(3)], type(model).__name__
    with pytest.raises(ValueError, match="num_hidden_layers"):
        transformer_layers(torch.nn.Linear(2, 2))


def test_an_encoder_audited_by_its_cls_token(tmp_path, tokenizer):
    torch.manual_seed(0)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).eval()
    cfg = config(tmp_path, scores=False, pooling="first")
    call = encode(tokenizer, "left")
    call["token_type_ids"] = torch.zeros_like(call["input_ids"])
    ids = list(range(len(TEXTS)))
    want = direct_scores(bert, cfg, ids, call, block=1)
    auditor, got = auditor_for(cfg)
    hooks = attach(bert, auditor, modules={"block0": transformer_layers(bert)[1]})
    with torch.no_grad(), hooks.samples(ids):
        bert(**call)
    hooks.remove()
    auditor.close(10.0)
    assert hooks.errors == {} and hooks.batches == 1
    assert got == want


def test_a_one_channel_token_tap_is_given_log_probabilities_alone(tmp_path, tokenizer):
    """A ``token_logprobs`` tap of one channel (Min-K% without Min-K%++) gets the tokens'
    log-probabilities, computed in one pass over the vocabulary, equal to the first of the three
    channels; the hooks' scores equal a direct submit."""
    model = causal_lm("gpt2", len(tokenizer))
    features = ["mean", "min_k:0.2"]
    path, digest = head(tmp_path, len(features))
    tap = {"name": "token_scores", "channels": 1, "kind": "token_logprobs", "max_tokens": 64, "features": features}
    cfg = {
        "model": {"id": "hf", "version": "1"},
        "taps": [tap],
        "head": {"kind": "vanilla", "path": str(path), "sha256": digest},
        "workers": 1,
    }
    call = encode(tokenizer, "right")
    ids = list(range(len(TEXTS)))
    with torch.no_grad():
        logits = model(**call).logits
    one = token_scores(logits, call["input_ids"], channels=1)
    assert one.shape == (len(TEXTS), call["input_ids"].shape[1] - 1)
    torch.testing.assert_close(one, token_scores(logits, call["input_ids"])[..., 0], rtol=1e-5, atol=1e-5)
    m = call["attention_mask"] != 0
    direct, want = auditor_for(cfg)
    direct.submit(ids, [one], mask=m[:, :-1] & m[:, 1:])
    direct.close(10.0)
    auditor, got = auditor_for(cfg)
    hooks = attach(model, auditor)
    with torch.no_grad(), hooks.samples(ids):
        model(**call)
    hooks.remove()
    assert auditor.close(10.0).stats.audited == len(TEXTS) and hooks.errors == {}
    assert got == pytest.approx(want, abs=1e-6)
