"""onnxruntime side of benches/overhead.rs: a model's forward pass alone, and followed by the
mint_audit package's submit of its outputs (numpy arrays read in place), in alternating pairs.

    python overhead_ort.py MODEL_DIR BATCH PAIRS   ->  JSON medians in ms on stdout
"""

import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

import mint_audit


def main():
    model_dir, batch, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(os.path.join(model_dir, "auditor.json")) as f:
        config = json.load(f)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"])
    shape = config["model"]["input_shape"]
    n = batch * int(np.prod(shape))
    x = ((np.arange(n, dtype=np.int64) * 7919) % 1000).astype(np.float32).reshape([batch, *shape]) / 1000.0
    names = [t["tensor"] for t in config["taps"]]
    forward, audited, submit = [], [], []
    next_id = 0
    with mint_audit.Auditor(config, base_dir=model_dir) as auditor:
        for pair in range(pairs + 1):
            t = time.perf_counter()
            session.run(names, {"input": x})
            plain = time.perf_counter() - t
            t = time.perf_counter()
            outputs = session.run(names, {"input": x})
            ran = time.perf_counter() - t
            s = time.perf_counter()
            auditor.submit(list(range(next_id, next_id + batch)), outputs)
            handed = time.perf_counter() - s
            next_id += batch
            if pair > 0:
                forward.append(plain * 1e3)
                audited.append((ran + handed) * 1e3)
                submit.append(handed * 1e3)
        report = auditor.close(60.0)
    med = lambda v: float(np.median(v))  # noqa: E731
    print(
        json.dumps(
            {
                "forward_ms": med(forward),
                "audited_ms": med(audited),
                "submit_ms": med(submit),
                "dropped": int(report.stats.submitted - report.stats.audited),
            }
        )
    )


if __name__ == "__main__":
    main()
