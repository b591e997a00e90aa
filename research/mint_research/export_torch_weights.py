"""Writes models/fmnist-*/model.pt, the PyTorch weights of each shipped audited model, from its
model.onnx (the served graph, BatchNorm folded by the export) into examples/python/fmnist_model.py's
ResNet4, then checks them: the logits and the Vanilla features (per-channel maxima of the four
stage taps) of the training run's reference inputs (reference/*.npy, computed by the original
PyTorch model) must agree within 1e-4.

Run in the venv that has the mint_audit package (and Debian's torch and onnx):
    .venv/bin/python -m mint_research.export_torch_weights [MODEL_DIR ...]
"""

import os
import sys

import fmnist_model  # examples/python, importable from the checkout's venv (scripts/setup.sh)
import numpy as np
import onnx
import torch
from onnx import numpy_helper

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from mint_audit.torch import module_for_tensor  # noqa: E402


def state_dict_from_onnx(path, model):
    graph = onnx.load(path).graph
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    state = {"mean": inits["mean"], "std": inits["std"], "fc.weight": inits["fc.weight"], "fc.bias": inits["fc.bias"]}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        module = module_for_tensor(node.output[0])
        state[f"{module}.weight"], state[f"{module}.bias"] = inits[node.input[1]], inits[node.input[2]]
    expected = set(model.state_dict())
    if set(state) != expected:
        raise SystemExit(
            f"{path}: weights do not fit the model: missing {expected - set(state)}, extra {set(state) - expected}"
        )
    return state


def check(model_dir, model):
    ref = os.path.join(model_dir, "reference")
    x = torch.from_numpy(np.load(os.path.join(ref, "inputs.npy")))
    captured = {}
    convs = [getattr(model, f"layer{i}")[-1].conv2 for i in range(1, 5)]
    hooks = [c.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, o)) for k, c in enumerate(convs)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    features = torch.cat([captured[k].amax(dim=(2, 3)) for k in range(4)] + [logits], dim=1).numpy()
    want = np.load(os.path.join(ref, "features.npy"))
    worst = float(np.abs(features - want).max())
    if worst > 1e-4:
        raise SystemExit(f"{model_dir}: features differ from the training run's by {worst:.2e}")
    return worst


def main():
    dirs = sys.argv[1:] or [os.path.join(ROOT, "models", v) for v in ("fmnist-memorizing", "fmnist-generalizing")]
    torch.manual_seed(0)
    for model_dir in dirs:
        model = fmnist_model.ResNet4(fmnist_model.blocks_of(model_dir)).eval()
        model.load_state_dict(state_dict_from_onnx(os.path.join(model_dir, "model.onnx"), model))
        worst = check(model_dir, model)
        torch.save(model.state_dict(), os.path.join(model_dir, "model.pt"))
        print(f"{model_dir}/model.pt: features within {worst:.1e} of the training run's")


if __name__ == "__main__":
    main()
