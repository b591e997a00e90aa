"""What the transparency console leaks to a stranger, measured through its HTTP API: the
membership advantage (AUC, TPR at 1% FPR) an attacker gets on images they did not train,
at each disclosure level (docs/security.md, "What the console leaks").

The attacker holds 2 x N target images of the shipped memorising model, half of them members
(its demo members) and half not (its demo non-members), and a pool of other known non-members
to pad sets with. Attacks, each through a real `mint serve` with the budget lifted (the budget's
effect is arithmetic, stated beside the table):

- single: one target per request; the attacker's score is what the answer says of it (its score
  at `scores`; nothing at `flags` and `sets`, which refuse sets of fewer than 10 images).
- padded: each target with the same 9 padding non-members; the attacker's score is everything the
  answer says that depends on the target: its flag, then the set's rank-test p-value (only its
  side of the decision level below `scores`), then the set's AUC (not told below `scores`).

    .venv/bin/python -m mint_research.console_leakage --targets 250 --json docs/console-leakage.json

prints the markdown table of docs/security.md and writes it with the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "fmnist-memorizing"
PADS = 9
P_ORDER = ["< 0.01", "≥ 0.01", "unknown"]


def demo_images(kind: str) -> np.ndarray:
    with open(os.path.join(ROOT, "models", MODEL, f"demo-{kind}-idx3-ubyte"), "rb") as f:
        data = f.read()
    n, h, w = struct.unpack(">III", data[4:16])
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)


def idx(image: np.ndarray) -> bytes:
    return bytes([0, 0, 8, 3]) + struct.pack(">III", 1, *image.shape) + image.tobytes()


def multipart(files: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, content in files:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + b"\r\n"
        )
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


class Console:
    """A `mint serve` process at one disclosure level, with the budget and rate lifted."""

    def __init__(self, mint: str, level: str) -> None:
        args = [mint, "serve", "--listen", "127.0.0.1:0", "--model", os.path.join(ROOT, "models", MODEL)]
        args += ["--disclosure", level, "--rate-per-minute", "1000000", "--daily-images", "100000000"]
        args += ["--daily-sets-per-image", "100000000", "--min-set", "1" if level == "scores" else "10"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.url = next(w for w in line.split() if w.startswith("http://")).rstrip("/")
        while True:
            with urllib.request.urlopen(f"{self.url}/api/models") as r:
                if json.load(r)["models"][0]["status"] == "ready":
                    break
            time.sleep(0.3)

    def analyze(self, files: list[tuple[str, bytes]]) -> tuple[int, dict[str, Any]]:
        content_type, body = multipart(files)
        request = urllib.request.Request(
            f"{self.url}/api/analyze?model={MODEL}", data=body, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request) as r:
                envelope = json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)
        return 200, json.loads(base64.b64decode(envelope["payload"]))["predicate"]["evidence"]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def attacker_score(evidence: dict[str, Any], target: int) -> tuple[float, ...]:
    """Everything the answer says that can depend on the target, as a sortable key."""
    image = evidence["images"][target]
    if "score" in image:
        return (float(image["score"]),)
    flag = float(image.get("flagged", 0.0))
    rank = evidence["set"]["rank_test"]
    p = rank["p_value"]
    p_key = -float(p) if isinstance(p, (int, float)) else -float(P_ORDER.index(p))
    auc = rank.get("auc")
    return (flag, p_key, float(auc) if isinstance(auc, (int, float)) else 0.0)


def ranks(keys: list[tuple[float, ...]]) -> np.ndarray:
    """Mid-ranks of lexicographic keys (ties share their rank)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    out = np.empty(len(keys))
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and keys[order[j + 1]] == keys[order[i]]:
            j += 1
        out[[order[k] for k in range(i, j + 1)]] = (i + j) / 2.0
        i = j + 1
    return out


def advantage(members: list[tuple[float, ...]], non_members: list[tuple[float, ...]]) -> dict[str, float]:
    """AUC (ties counted half) and the best TPR at FPR <= 1% over thresholds between distinct keys."""
    r = ranks(members + non_members)
    m, n = len(members), len(non_members)
    # Mann-Whitney from 0-based mid-ranks: the members' rank sum less their own pairs.
    auc = (r[:m].sum() - m * (m - 1) / 2.0) / (m * n)
    best_tpr = 0.0
    for cut in sorted(set(r)):
        fpr = float((r[m:] >= cut).mean())
        if fpr <= 0.01:
            best_tpr = max(best_tpr, float((r[:m] >= cut).mean()))
    return {"auc": float(auc), "tpr_at_1pct_fpr": best_tpr}


def run(mint: str, targets: int) -> list[dict[str, Any]]:
    members, non_members = demo_images("members"), demo_images("non-members")
    assert targets + PADS <= len(non_members), "targets and pads are drawn from 500 non-members"
    pads = [(f"pad-{i}-idx3-ubyte", idx(non_members[len(non_members) - 1 - i])) for i in range(PADS)]
    rows = []
    for level in ["scores", "flags", "sets"]:
        console = Console(mint, level)
        try:
            for attack in ["single", "padded"]:
                started = time.time()
                keys: dict[str, list[tuple[float, ...]]] = {"members": [], "non_members": []}
                refused = 0
                for kind, images in [("members", members), ("non_members", non_members)]:
                    for i in range(targets):
                        target = (f"target-{kind}-{i}-idx3-ubyte", idx(images[i]))
                        files = [target] if attack == "single" else [target, *pads]
                        status, evidence = console.analyze(files)
                        if status == 422 and "sets of at least" in evidence.get("error", ""):
                            refused += 1
                            keys[kind].append((0.0,))
                            continue
                        if status != 200:
                            raise RuntimeError(f"{level}, {attack}: the console answered {status}: {evidence}")
                        keys[kind].append(attacker_score(evidence, 0))
                figures = advantage(keys["members"], keys["non_members"])
                rows.append(
                    {
                        "disclosure": level,
                        "attack": attack,
                        "targets": 2 * targets,
                        "refused": refused,
                        **figures,
                        "seconds": round(time.time() - started, 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
        finally:
            console.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| disclosure | attack | targets | refused | AUC | TPR at 1% FPR |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['disclosure']}` | {r['attack']} | {r['targets']} | {r['refused']} | {r['auc']:.3f} | "
            f"{100 * r['tpr_at_1pct_fpr']:.1f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=250, help="members and as many non-members attacked")
    parser.add_argument("--mint", default=os.environ.get("MINT_BIN", os.path.join(ROOT, "target", "release", "mint")))
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = run(args.mint, args.targets)
    command = f".venv/bin/python -m mint_research.console_leakage --targets {args.targets}"
    print(f"\n<!-- {command} -->\n{table(rows)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "rows": rows}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
