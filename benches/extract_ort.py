"""onnxruntime side of benches/extract.rs: the audited model's forward pass with its taps as
outputs (intermediate tensors are declared as graph outputs first, as `mint extract` exposes
them in tract), on 1 and 2 intra-op threads.

    python extract_ort.py MODEL_DIR BATCH SAMPLES ROUNDS  ->  JSON samples/s (median round)
"""

import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def tapped_model(model_dir, names):
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return model.SerializeToString()


def main():
    model_dir, batch, samples, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with open(os.path.join(model_dir, "auditor.json")) as f:
        config = json.load(f)
    names = [t["tensor"] for t in config["taps"]]
    model = tapped_model(model_dir, names)
    shape = config["model"]["input_shape"]
    n = batch * int(np.prod(shape))
    x = ((np.arange(n, dtype=np.int64) * 7919) % 1000).astype(np.float32).reshape([batch, *shape]) / 1000.0
    result = {}
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        session.run(names, feed)
        rates = []
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(samples // batch):
                session.run(names, feed)
            rates.append(samples // batch * batch / (time.perf_counter() - t))
        result[f"threads_{threads}"] = float(np.median(rates))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
