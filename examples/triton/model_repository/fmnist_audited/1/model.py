"""Triton python-backend model: the shipped audited Fashion-MNIST model in PyTorch, audited in
process by mint-audit through forward hooks.

Requests of one execute() call are run in one forward per cohort; each forward submits its
batch to the auditor from the hooks (channel maxima computed by the library from the maps in
place, on the CPU; `amax` on the device where Triton places the instance on a GPU).

With the `timing_file` parameter (benches/triton_overhead.py), each audited forward is paired
with a forward of an unhooked copy of the model on the same batch, in alternating order, and
both are timed (wall clock, and the serving thread's CPU time) and written there at finalize:
what the audit adds on the serving thread, measured in process, free of the client's and the
server's noise. The copy's output is discarded.
"""

import copy
import json
import os
import sys
import time

import numpy as np


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        repo = params["repo"]
        for path in (params.get("site_packages", ""), os.path.join(repo, "examples", "python")):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        import fmnist_model
        import torch
        import triton_python_backend_utils as pb_utils

        self.pb, self.torch = pb_utils, torch
        torch.set_num_threads(int(params.get("threads", "1") or 1))
        self.device = "cpu"
        if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
            self.device = f"cuda:{args['model_instance_device_id']}"
        self.model = fmnist_model.load(os.path.join(repo, params["model_dir"])).to(self.device)
        self.auditor = self.hooks = self.unhooked = None
        self.timing_file, self.timings = params.get("timing_file", ""), []
        if params.get("audit", "on") == "on":
            import mint_audit
            from mint_audit.torch import attach

            path = os.path.join(repo, params["auditor"])
            with open(path) as f:
                auditor_config = json.load(f)
            listen = params.get("metrics_listen", "")
            auditor_config["metrics"] = {"http": {"listen": listen}} if listen else {}
            self.auditor = mint_audit.Auditor(auditor_config, base_dir=os.path.dirname(path))
            if self.timing_file:
                self.unhooked = copy.deepcopy(self.model)
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
            names = (
                [c.decode() if isinstance(c, bytes) else str(c) for c in cohort.as_numpy().reshape(-1)]
                if cohort is not None
                else ["default"] * n
            )
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
                x = batch[index]
                if self.unhooked is None:
                    with self.hooks.samples([ids[i] for i in rows], cohort):
                        logits[index] = self.model(x).cpu()
                    continue
                # Paired timing (timing_file): the unhooked copy first on every other forward.
                plain_first = len(self.timings) % 2 == 0
                if plain_first:
                    _, plain_wall, plain_cpu = self._timed(self.unhooked, x)
                with self.hooks.samples([ids[i] for i in rows], cohort):
                    y, wall, cpu = self._timed(self.model, x)
                if not plain_first:
                    _, plain_wall, plain_cpu = self._timed(self.unhooked, x)
                logits[index] = y
                self.timings.append((plain_wall, plain_cpu, wall, cpu, len(rows)))
        out, responses = logits.numpy(), []
        start = 0
        for n in sizes:
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("logits", out[start : start + n])]))
            start += n
        return responses

    def _timed(self, model, x):
        """The model's output on `x`, and the wall-clock and this thread's CPU seconds it took."""
        wall, cpu = time.perf_counter(), time.thread_time()
        y = model(x).cpu()
        return y, time.perf_counter() - wall, time.thread_time() - cpu

    def finalize(self):
        if self.timing_file:
            with open(self.timing_file, "w") as f:
                fields = ["unhooked_wall_s", "unhooked_cpu_s", "audited_wall_s", "audited_cpu_s", "samples"]
                json.dump({"fields": fields, "forwards": self.timings}, f)
        if self.auditor is not None:
            self.hooks.remove()
            report = self.auditor.close(5.0)
            print(f"mint-audit closed: {report}", flush=True)
