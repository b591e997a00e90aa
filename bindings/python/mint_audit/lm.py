"""Per-text membership features of any causal language model, written as the feature table
`mint dataset-inference` reads (JSON Lines, docs/formats.md): the route from an auditor's
model and an owner's texts to dataset inference (docs/language-models.md).

    python -m mint_audit.lm --model DIR --texts owner.jsonl --out owner-features.jsonl

``DIR`` is a Hugging Face model folder (what ``save_pretrained`` writes: ``config.json``, the
weights and the tokenizer's files), read locally and never downloaded. ``--texts`` is a
``.txt`` file (one text per line) or ``.jsonl`` (one object per line with a ``"text"``).

Per text, from the library's own code (the token scores of ``mint_audit.torch.token_scores``
turned into features by ``mint_audit.features``, exactly what a live ``token_logprobs`` tap
computes): ``loss`` (the mean negative log-probability of the text's tokens after the first),
``zlib_ratio`` (the loss over the zlib-compressed length of the text in bytes; Carlini et al.
2021), ``min_k:K`` and ``min_kpp:K`` for K in 5, 10, 20, 30 and 50% (Min-K% and Min-K%++; which
tokens: docs/design.md). Texts longer than the model's context (or ``--max-tokens``) are cut
to it; a text of fewer than two tokens has nothing to score and is left out, counted on
stderr. The table holds features only: a text's length is not one (it tells sets of different
kinds apart, not members from non-members).

Why PyTorch rather than an ONNX export: an auditor's language model comes as a Hugging Face
folder; exporting a causal LM to ONNX (dynamic sequence lengths, attention masks) is fragile
and tract runs few of them, while these features need only the logits, and computing them with
the library's own code from the model the vendor serves makes them the live path's features.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mint_audit

KS = ("0.05", "0.1", "0.2", "0.3", "0.5")
#: The features of each row, in order (``loss`` and ``zlib_ratio`` first).
FEATURES = ("loss", "zlib_ratio", *(f"min_k:{k}" for k in KS), *(f"min_kpp:{k}" for k in KS))

# One token_logprobs tap of three channels; the library computes its features. The head is
# never loaded: `mint_audit.features` builds rows only.
_CONFIG: dict[str, Any] = {
    "model": {"id": "text-features", "version": "1"},
    "taps": [
        {
            "name": "token_scores",
            "channels": 3,
            "kind": "token_logprobs",
            "max_tokens": 1 << 20,
            "features": ["mean", *(f"min_k:{k}" for k in KS), *(f"min_kpp:{k}" for k in KS)],
        }
    ],
    "head": {"kind": "vanilla", "path": "unused.onnx", "sha256": "0" * 64},
}


def read_texts(path: str | Path) -> list[str]:
    """The texts of a ``.txt`` file (one per non-empty line) or a ``.jsonl`` file (a ``"text"``
    per line), with errors that name the line."""
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl"):
        raise ValueError(f'{path}: texts come as .txt (one per line) or .jsonl (a "text" per line)')
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".txt":
        return [line for line in lines if line.strip()]
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f'{path}: line {number}: not an object with a "text" ({e})') from None
        if not isinstance(text, str):
            raise ValueError(f'{path}: line {number}: "text" is not a string')
        texts.append(text)
    return texts


def context_length(model: Any) -> int:
    """The longest sequence the model reads: its config's positions, else 1024."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    return 1024


def text_features(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 8, max_tokens: int | None = None
) -> Iterator[tuple[int, dict[str, float] | None]]:
    """For each text, in order: its index and its features (``FEATURES``), or None when it has
    fewer than two tokens (or a non-finite score). Sets ``tokenizer`` to pad on the right, with
    its end-of-sequence token where it has no pad token."""
    import torch

    from mint_audit.torch import token_scores

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    limit = max_tokens or context_length(model)
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=limit)
        ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
        with torch.no_grad():
            output = model(input_ids=ids, attention_mask=mask)
        logits = output.logits if hasattr(output, "logits") else output[0]
        scores = token_scores(logits, ids).cpu()
        valid = (mask != 0).cpu()
        scored = valid[:, :-1] & valid[:, 1:]  # a score for each token that has one before it
        counts = scored.sum(1)
        keep = [i for i in range(len(chunk)) if counts[i] > 0]
        rows = {}
        if keep:
            raw, left_out = mint_audit.features(_CONFIG, [scores[keep].contiguous()], mask=scored[keep])
            values = memoryview(raw).cast("f")
            width = len(FEATURES) - 1  # the library's: mean, Min-K% x 5, Min-K%++ x 5
            for j, i in enumerate(keep):
                if j in left_out:
                    continue  # a non-finite score: counted by the caller as left out
                row = values[j * width : (j + 1) * width]
                loss = -row[0]
                compressed = len(zlib.compress(chunk[i].encode("utf-8")))
                rows[i] = {"loss": loss, "zlib_ratio": loss / compressed}
                rows[i].update({name: row[1 + n] for n, name in enumerate(FEATURES[2:])})
        for i in range(len(chunk)):
            yield start + i, rows.get(i)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a Hugging Face model folder (config.json, weights, tokenizer)")
    ap.add_argument("--texts", required=True, help='.txt (one text per line) or .jsonl (a "text" per line)')
    ap.add_argument("--out", required=True, help="the feature table to write (JSON Lines)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=None, help="cut texts to this many tokens (default: the context)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        import transformers
    except ImportError:
        print("mint_audit.lm needs transformers (pip install transformers)", file=sys.stderr)
        return 2
    texts = read_texts(args.texts)
    if not texts:
        print(f"{args.texts}: no texts", file=sys.stderr)
        return 2
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True)
    model.to(args.device).eval()
    left_out = []
    with open(args.out, "w", encoding="utf-8") as out:
        for index, row in text_features(model, tokenizer, texts, args.batch, args.max_tokens):
            if row is None:
                left_out.append(index)
                continue
            out.write(json.dumps({"id": f"text-{index}", **row}) + "\n")
    written = len(texts) - len(left_out)
    print(
        f"{args.out}: {written} texts; left out {len(left_out)} (fewer than two tokens){': ' if left_out else ''}"
        + ", ".join(map(str, left_out[:20])),
        file=sys.stderr,
    )
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
