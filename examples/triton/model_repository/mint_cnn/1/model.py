"""Triton python-backend model: a CNN MINT head (ONNX) run with onnxruntime.

Inputs `maps` [N, C, H, W] FP32, outputs `score` [N, 1] FP32 (membership probabilities).
Uses CUDA when onnxruntime has it and Triton placed this instance on a GPU, else the CPU.
"""

import json
import os
import sys


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        site = params.get("site_packages", "")
        if site and site not in sys.path:
            sys.path.insert(0, site)
        import numpy  # noqa: F401  (after the path: onnxruntime's numpy)
        import onnxruntime as ort

        here = os.path.join(args["model_repository"], args["model_version"])
        head = os.path.join(here, params.get("head", "cnn_head.onnx"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("threads", "1") or 1)
        self.session = ort.InferenceSession(head, options, providers=providers)
        self.input = self.session.get_inputs()[0].name
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            maps = pb.get_input_tensor_by_name(request, "maps").as_numpy()
            scores = self.session.run(None, {self.input: maps})[0].reshape(-1, 1).astype("float32")
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("score", scores)]))
        return responses
