"""Triton python-backend model: the shipped audited Fashion-MNIST model in PyTorch, audited in
process by mint-audit through forward hooks.

Requests of one execute() call are run in one forward per cohort; each forward submits its
batch to the auditor from the hooks (channel maxima computed by the library from the maps in
place, on the CPU; `amax` on the device where Triton places the instance on a GPU).
"""
import json
import os
import sys

import numpy as np


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        repo = params["repo"]
        for path in (params.get("site_packages", ""), os.path.join(repo, "examples", "python")):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        import torch
        import triton_python_backend_utils as pb_utils

        import fmnist_model

        self.pb, self.torch = pb_utils, torch
        torch.set_num_threads(int(params.get("threads", "1") or 1))
        self.device = "cpu"
        if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
            self.device = f"cuda:{args['model_instance_device_id']}"
        self.model = fmnist_model.load(os.path.join(repo, params["model_dir"])).to(self.device)
        self.auditor = self.hooks = None
        if params.get("audit", "on") == "on":
            import mint_audit
            from mint_audit.torch import attach

            path = os.path.join(repo, params["auditor"])
            with open(path) as f:
                auditor_config = json.load(f)
            listen = params.get("metrics_listen", "")
            auditor_config["metrics"] = {"http": {"listen": listen}} if listen else {}
            self.auditor = mint_audit.Auditor(auditor_config, base_dir=os.path.dirname(path))
            self.hooks = attach(self.model, self.auditor)
        self.next_id = 0

    def execute(self, requests):
        pb, torch = self.pb, self.torch
        images, ids, cohorts, sizes = [], [], [], []
        for request in requests:
            image = pb.get_input_tensor_by_name(request, "image").as_numpy()
            n = image.shape[0]
            sample_id = pb.get_input_tensor_by_name(request, "sample_id")
            if sample_id is not None:
                request_ids = sample_id.as_numpy().reshape(-1).tolist()
            else:
                request_ids = list(range(self.next_id, self.next_id + n))
                self.next_id += n
            cohort = pb.get_input_tensor_by_name(request, "cohort")
            names = [c.decode() if isinstance(c, bytes) else str(c) for c in cohort.as_numpy().reshape(-1)] if cohort is not None else ["default"] * n
            images.append(image)
            ids.extend(request_ids)
            cohorts.extend(names)
            sizes.append(n)
        batch = torch.from_numpy(np.concatenate(images)).to(self.device)
        logits = torch.empty(batch.shape[0], 10)
        with torch.no_grad():
            for cohort in dict.fromkeys(cohorts):
                rows = [i for i, c in enumerate(cohorts) if c == cohort]
                index = torch.tensor(rows)
                if self.hooks is None:
                    logits[index] = self.model(batch[index]).cpu()
                    continue
                with self.hooks.samples([ids[i] for i in rows], cohort):
                    logits[index] = self.model(batch[index]).cpu()
        out, responses = logits.numpy(), []
        start = 0
        for n in sizes:
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("logits", out[start:start + n])]))
            start += n
        return responses

    def finalize(self):
        if self.auditor is not None:
            self.hooks.remove()
            report = self.auditor.close(5.0)
            print(f"mint-audit closed: {report}", flush=True)
