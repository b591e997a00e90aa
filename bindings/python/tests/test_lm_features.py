"""Dataset inference for a language model this project never saw, end to end as
docs/language-models.md tells it: a Hugging Face GPT-2 made here (random init from a config, a
byte-level BPE tokenizer trained here, then trained on a member set), saved as a model folder;
`python -m mint_audit.lm` writes the feature tables of member, validation and other texts; `mint
dataset-inference` finds the members and stays quiet on the others. The features are checked
against Hugging Face's own loss and a direct Min-K%."""

import json
import math
import random
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import torch
from conftest import require

import mint_audit.lm as lm

try:
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
except ImportError:
    require("transformers and tokenizers (scripts/setup.sh installs them into .venv)")
warnings.filterwarnings("ignore", module="transformers")

WORDS = (
    "the a river stone light quiet north winter garden letter old young bright slow market road "
    "silver morning evening window paper music lamp harbour field cloud bread salt iron glass"
).split()


def sentences(count, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))) + "." for _ in range(count)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model folder as an auditor receives one: config, weights and tokenizer files; the
    model trained on `sentences(40, 1)` until it recites them."""
    folder = tmp_path_factory.mktemp("gpt2-members")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(sentences(200, 0), trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", model_input_names=["input_ids", "attention_mask"]
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=48, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    batch = tokenizer(sentences(40, 1), return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        optimiser.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write(path, texts):
    if path.suffix == ".txt":
        path.write_text("\n".join(texts) + "\n")
    else:
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def features(model_dir, texts_path, out):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mint_audit.lm",
            "--model",
            str(model_dir),
            "--texts",
            str(texts_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in out.read_text().splitlines()], run.stderr


def test_text_features_equal_hugging_faces_loss_and_a_direct_min_k(model_dir, tmp_path):
    texts = sentences(12, 2) + ["a"]  # the last has one token: nothing to score
    rows, stderr = features(model_dir, write(tmp_path / "texts.jsonl", texts), tmp_path / "table.jsonl")
    assert "12 texts; left out 1" in stderr and len(rows) == 12
    assert [r["id"] for r in rows] == [f"text-{i}" for i in range(12)]
    assert all(set(r) == {"id", *lm.FEATURES} for r in rows)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    for text, row in zip(texts, rows):
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
        assert row["loss"] == pytest.approx(out.loss.item(), rel=1e-5, abs=1e-5)
        logp = torch.log_softmax(out.logits[0, :-1].double(), -1).gather(-1, ids[0, 1:, None])[:, 0].numpy()
        lowest = np.sort(logp)[: max(1, math.ceil(0.2 * len(logp) - 1e-9))]
        assert row["min_k:0.2"] == pytest.approx(lowest.mean(), rel=1e-4, abs=1e-4)
        assert row["zlib_ratio"] == pytest.approx(row["loss"] / len(zlib.compress(text.encode())))


def test_dataset_inference_finds_the_texts_a_model_was_trained_on(model_dir, tmp_path, mint_bin):
    tables = {}
    for name, texts in [("members", sentences(40, 1)), ("validation", sentences(40, 3)), ("others", sentences(40, 4))]:
        # .txt and .jsonl read alike.
        source = write(tmp_path / (name + (".txt" if name == "validation" else ".jsonl")), texts)
        rows, _ = features(model_dir, source, tmp_path / f"{name}-features.jsonl")
        assert len(rows) == 40
        tables[name] = tmp_path / f"{name}-features.jsonl"
    members = [json.loads(line)["loss"] for line in tables["members"].read_text().splitlines()]
    others = [json.loads(line)["loss"] for line in tables["others"].read_text().splitlines()]
    assert np.mean(members) < np.mean(others) - 0.5, "the model learnt its members"

    def inference(suspect, expect):
        out = tmp_path / f"di-{suspect}"
        run = subprocess.run(
            [
                mint_bin,
                "dataset-inference",
                "--suspect",
                str(tables[suspect]),
                "--validation",
                str(tables["validation"]),
            ]
            + ["--expect", expect, "--out-dir", str(out)],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return json.loads((out / "report.json").read_text())

    found = inference("members", "evidence")
    assert found["inference"]["p_value"] < 1e-3 and found["features"] == sorted(lm.FEATURES)
    quiet = inference("others", "no-evidence")
    assert quiet["inference"]["p_value"] > 0.01


def test_texts_are_read_with_errors_that_name_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    with pytest.raises(ValueError, match="line 2"):
        lm.read_texts(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match=r"\.txt .* or \.jsonl"):
        lm.read_texts(tmp_path / "texts.csv")
