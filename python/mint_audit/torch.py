"""Auditing a ``torch.nn.Module`` where it runs: forward hooks on the tapped layers.

    from mint_audit.torch import attach
    hooks = attach(model, auditor)            # taps found from the configuration
    with hooks.samples(ids):                  # the caller's ids for this batch
        logits = model(images)
    hooks.remove()

Each configured activation-map tap is the output of one module. ``attach`` finds it from the
tap's ONNX tensor name (``/layer1/layer1.0/conv2/Conv_output_0`` is module
``layer1.0.conv2``, as ``torch.onnx.export`` names nodes) unless ``modules`` maps the tap
name to a module name; the outcome tap is the model's output (``outcome`` picks it from a
tuple or dict output). Every forward of the model then submits one batch.

- On CPU, the maps are never copied: a small map is handed over in place and reduced by the
  library at the end of the forward; a map of ``REDUCE_IN_HOOK_BYTES`` or more is reduced in
  place by the library inside its hook, so the model does not hold it to the end.
- On CUDA, each map is reduced on the device with ``amax`` over H and W and only the channel
  maxima (``[N, C]``) cross to the host; the features are identical (a maximum is exact in
  any dtype). A CNN head needs whole maps: they are copied to the host.

The hooks never raise into the model's forward: an auditor error (a full queue, a closed
auditor, bad input) is counted in ``errors`` by status, and the library counts the lost
samples in its own stats. Concurrent forwards on several threads are fine: ids and captured
maps are kept per thread.
"""

import contextlib
import itertools
import threading

import torch

from . import MintError

__all__ = ["attach", "AuditHooks", "module_for_tensor", "REDUCE_IN_HOOK_BYTES"]

#: On the CPU, activation maps of at least this many bytes are reduced to their channel maxima
#: inside their hook (``Auditor.channel_maxima``), so that the forward does not hold them to its
#: end (the host's peak memory); smaller ones, cheap to hold, are handed over in place at the end
#: of the forward and spare the native call per tap. ``benches/torch_hooks.py`` measured no
#: latency difference either way at batch 16.
REDUCE_IN_HOOK_BYTES = 64 << 10


def module_for_tensor(tensor_name):
    """The module name ``torch.onnx.export`` scoped an ONNX tensor under:
    ``/layer1/layer1.0/conv2/Conv_output_0`` -> ``layer1.0.conv2``,
    ``/layer2/layer2.0/shortcut/shortcut.0/Conv_output_0`` -> ``layer2.0.shortcut.0``. None for a graph input or
    output that no module scope names (``logits``)."""
    parts = [p for p in tensor_name.split("/") if p]
    if len(parts) < 2:
        return None
    qualified, previous = "", ""
    for scope in parts[:-1]:
        # A container's child repeats the container's scope (`shortcut` then `shortcut.0`);
        # any other scope is the attribute name (`conv2`).
        if previous and scope.startswith(previous + "."):
            qualified += scope[len(previous):]
        else:
            qualified = f"{qualified}.{scope}" if qualified else scope
        previous = scope
    return qualified


class AuditHooks:
    """The hooks ``attach`` installed; ``remove()`` takes them off."""

    def __init__(self, model, auditor, modules, outcome, cohort, head_needs_maps):
        self.auditor = auditor
        self.cohort = cohort
        self.errors = {}
        self.batches = 0
        self._outcome = outcome
        self._head_needs_maps = head_needs_maps
        self._local = threading.local()
        self._auto_ids = itertools.count(1 << 62)
        self._lock = threading.Lock()
        self._handles = []
        self._taps = auditor.taps
        named = dict(model.named_modules())
        for position, (tap, kind) in enumerate(self._taps):
            if kind == "outcome" and tap not in modules:
                continue
            name = modules[tap]
            if name not in named:
                raise ValueError(f"tap '{tap}': the model has no module named '{name}'")
            hook = named[name].register_forward_hook(self._capture_hook(position, kind))
            self._handles.append(hook)
        self._outcome_position = next(
            (i for i, (tap, kind) in enumerate(self._taps) if kind == "outcome" and tap not in modules), None
        )
        self._handles.append(model.register_forward_hook(self._model_hook))

    @contextlib.contextmanager
    def samples(self, ids, cohort=None):
        """The sample ids of the batch the model runs inside this block (this thread only), and
        the cohort to submit them in (default: ``attach``'s). Without it, samples get ids
        counted from 2**62."""
        previous = getattr(self._local, "ids", None), getattr(self._local, "cohort", None)
        self._local.ids, self._local.cohort = ids, cohort
        try:
            yield self
        finally:
            self._local.ids, self._local.cohort = previous

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _captured(self):
        captured = getattr(self._local, "captured", None)
        if captured is None:
            captured = self._local.captured = [None] * len(self._taps)
        return captured

    def _capture_hook(self, position, kind):
        # Runs inside the model's forward on every call: kept to a few attribute reads.
        captured_now, prepare = self._captured, self._prepare
        tap, maxima = self._taps[position][0], self.auditor.channel_maxima
        reduce_early = kind == "activation_map" and not self._head_needs_maps

        def hook(_module, _inputs, output):
            captured = captured_now()
            if not output.is_cpu or output.requires_grad:
                captured[position] = prepare(output, kind)
                return
            # On the CPU a small map is handed over as it is; a large one is reduced now, so that
            # the forward need not hold it until it ends.
            if reduce_early and output.dim() == 4 and output.numel() * output.element_size() >= REDUCE_IN_HOOK_BYTES:
                try:
                    reduced = maxima(tap, output)
                    captured[position] = torch.frombuffer(reduced, dtype=torch.float32).view(output.shape[0], output.shape[1])
                    return
                except MintError:
                    pass  # handed over as it is: submit reports the error and counts the samples
            captured[position] = output

        return hook

    def _prepare(self, tensor, kind):
        tensor = tensor.detach()
        if tensor.is_cpu:
            return tensor
        if kind == "activation_map" and tensor.dim() == 4 and not self._head_needs_maps:
            # Only the channel maxima cross to the host.
            return tensor.amax(dim=(2, 3)).cpu()
        return tensor.cpu()

    def _model_hook(self, _module, _inputs, output):
        captured = self._captured()
        self._local.captured = None
        try:
            if self._outcome_position is not None:
                out = self._outcome(output) if self._outcome is not None else output
                captured[self._outcome_position] = self._prepare(out, "outcome")
            if any(t is None for t in captured):
                self._count("MISSING_TAP")
                return
            n = captured[0].shape[0]
            ids = getattr(self._local, "ids", None)
            if ids is None:
                with self._lock:
                    ids = [next(self._auto_ids) for _ in range(n)]
            elif torch.is_tensor(ids):
                ids = ids.tolist()
            cohort = getattr(self._local, "cohort", None) or self.cohort
            self.auditor.submit(ids, captured, None if cohort == "default" else cohort)
            with self._lock:
                self.batches += 1
        except MintError as error:
            self._count(getattr(error, "status", type(error).__name__))
        except (TypeError, ValueError):
            self._count("BAD_IDS")

    def _count(self, status):
        with self._lock:
            self.errors[status] = self.errors.get(status, 0) + 1


def attach(model, auditor, modules=None, outcome=None, cohort=None):
    """Attaches ``auditor`` to ``model``: returns the ``AuditHooks``.

    - ``modules``: tap name -> module name, for taps whose module is not found from the
      configuration's ONNX tensor name; a tap of kind ``outcome`` listed here is taken from
      that module's output instead of the model's.
    - ``outcome``: a function picking the outcome tensor from the model's output (default:
      the output itself).
    - ``cohort``: the cohort every batch is submitted in (default: ``default``).
    """
    modules = dict(modules or {})
    for tap, kind in auditor.taps:
        if tap in modules or kind == "outcome":
            continue
        tensor = auditor.tap_tensor(tap)
        name = module_for_tensor(tensor) if tensor else None
        if name is None:
            raise ValueError(f"tap '{tap}': no module found from its tensor {tensor!r}; name it in `modules`")
        modules[tap] = name
    return AuditHooks(model, auditor, modules, outcome, cohort, auditor.head_kind == "cnn")
