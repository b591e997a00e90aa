"""The shipped memorising language model's scored pools, for the anytime study of
docs/evidence.md: its MINT head's scores of the eval members and of held-out non-members (the
eval non-members and 2,000 spare ones), through the library's own auditor (`mint_audit`), as
serving would score them.

    .venv/bin/python -m mint_research.lm_pools models/fortunes-lm-memorizing target/lm-pools
    target/release/mint evidence-study --anytime --pools target/lm-pools ...

Writes `members.npy`, `non_members.npy` (float32 scores) and `pools.json` (the model's id and
where the samples came from) into the output folder.
"""

import json
import os
import sys

import numpy as np
import torch

import mint_audit
from mint_research import train_lm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "models", "data", "fortunes.json")
SPARE = 2000


def scores(model_dir, lm, texts, indices):
    """The head's score of each text, through an auditor built from the shipped configuration."""
    got = {}
    auditor = mint_audit.Auditor(
        os.path.join(model_dir, "auditor.json"), on_results=lambda rs: got.update((r.sample_id, r.score) for r in rs)
    )
    for i in range(0, len(indices), 64):
        chosen = indices[i : i + 64]
        tokens, lengths = train_lm.encode([texts[j] for j in chosen])
        tokens = tokens[:, : int(lengths.max())]
        with torch.no_grad():
            logits, hidden = lm(tokens)
            token_scores = train_lm.token_scores(logits, tokens)
        names = [f"block{b + 1}" for b in range(len(hidden))]
        # Hidden states count every real token; token scores one fewer (each scores the next).
        selection = {**{n: lengths for n in names}, "token_scores": lengths - 1}
        assert auditor.submit(chosen, hidden + [token_scores], lengths=selection).accepted == len(chosen)
    stats = auditor.close(60.0).stats
    assert stats.audited == len(indices), stats
    return np.array([got[i] for i in indices], dtype=np.float32)


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    texts = json.load(open(CORPUS))
    split = json.load(open(os.path.join(model_dir, "split.json")))["protocols"]["same_distribution"]
    lm = train_lm.ByteLM()
    lm.load_state_dict(torch.load(os.path.join(model_dir, "model.pt")))
    lm.eval()
    torch.set_num_threads(2)
    members = split["eval"]["members"]
    non_members = split["eval"]["non_members"] + split["spare_non_members"][:SPARE]
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "members.npy"), scores(model_dir, lm, texts, members))
    np.save(os.path.join(out, "non_members.npy"), scores(model_dir, lm, texts, non_members))
    model_id = json.load(open(os.path.join(model_dir, "model.json")))["model"]["id"]
    source = f"{model_dir}: eval members; eval non-members and {SPARE} spare non-members of split.json"
    json.dump({"model": model_id, "source": source}, open(os.path.join(out, "pools.json"), "w"), indent=1)
    print(f"{len(members)} members, {len(non_members)} non-members scored into {out}")


if __name__ == "__main__":
    main()
