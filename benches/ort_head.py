"""onnxruntime baseline for benches/head.rs: samples/s of an ONNX head, single-threaded.

    python ort_head.py HEAD.onnx BATCH [BATCH ...]   ->  {"1": samples_per_s, ...} on stdout

Timed like the Rust side: the median over 15 trials of the mean time per call.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def ns_per_call(f, trials=15, trial_s=0.06):
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < trial_s / 2 or calls < 3:
        f()
        calls += 1
    per = max(3, calls * 2)
    samples = []
    for _ in range(trials):
        t = time.perf_counter_ns()
        for _ in range(per):
            f()
        samples.append((time.perf_counter_ns() - t) / per)
    samples.sort()
    return samples[len(samples) // 2]


def main():
    path, batches = sys.argv[1], [int(b) for b in sys.argv[2:]]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    width = sess.get_inputs()[0].shape[1]
    x = (np.arange(max(batches) * width) * 7919 % 1000).astype(np.float32).reshape(-1, width) / 300.0
    out = {}
    for b in batches:
        xb = np.ascontiguousarray(x[:b])
        t = ns_per_call(lambda xb=xb: sess.run(None, {name: xb}))
        out[str(b)] = b / t * 1e9
    print(json.dumps(out))


if __name__ == "__main__":
    main()
