"""Auditing a ``torch.nn.Module`` where it runs: forward hooks on the tapped layers.

    from mint_audit.torch import attach
    hooks = attach(model, auditor)            # taps found from the configuration
    with hooks.samples(ids):                  # the caller's ids for this batch
        logits = model(images)
    hooks.remove()

Each configured activation-map or token-sequence tap is the output of one module (the first
element when a module returns a tuple, as transformer blocks do). ``attach`` finds it from the
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

Language models: ``hooks.samples(ids, lengths=...)`` or ``samples(ids, mask=attention_mask)``
says which tokens of the batch count; a ``token_logprobs`` tap is computed from the model's
outcome (its logits) and its input tokens with ``token_scores``, scoring each token from
the ones before it (one position fewer). On CUDA, sequences are pooled on the device
(``pool``) and token scores computed there; only ``[N, C]`` and ``[N, T - 1, 3]`` cross.
A ``token_logits`` tap hands the logits themselves and the input tokens to the library,
which scores them on the host (the route C and C++ vendors take): on CUDA the whole
``[N, T, V]`` crosses, so ``token_logprobs`` is the cheaper tap there.

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

__all__ = ["attach", "AuditHooks", "module_for_tensor", "pool", "token_scores", "REDUCE_IN_HOOK_BYTES"]

#: Tap kinds taken from the model's outcome (and input tokens) unless ``modules`` names them.
_FROM_OUTCOME = ("outcome", "token_logprobs", "token_logits")

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


def token_scores(logits, tokens):
    """``[N, T - 1, 3]`` float32 from a causal language model's ``logits`` ``[N, T, V]`` and its
    input ``tokens`` ``[N, T]``: for the token at position t + 1, its log-probability given the
    tokens before it, and the mean and standard deviation of the log-probabilities of the
    model's next-token distribution at t (Min-K%++'s standardisation). What a
    ``token_logprobs`` tap of 3 channels takes; computed where the logits are."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    actual = logp.gather(-1, tokens[:, 1:, None].long())[..., 0]
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp * logp).sum(-1) - mu * mu).clamp(min=0).sqrt()
    return torch.stack([actual, mu, sigma], dim=-1)


def _valid(n, t, lengths, mask, device):
    """[N, T] booleans: the tokens that count."""
    if mask is not None:
        return torch.as_tensor(mask, device=device) != 0
    if lengths is not None:
        return torch.arange(t, device=device)[None, :] < torch.as_tensor(lengths, device=device)[:, None]
    return torch.ones(n, t, dtype=torch.bool, device=device)


def pool(hidden, pooling, lengths=None, mask=None):
    """A token sequence ``[N, T, C]`` pooled over each sample's valid tokens (``lengths`` [N]
    or ``mask`` [N, T]; neither: all), where it is (e.g. on the GPU): ``[N, C]`` float32, what
    the library computes from the whole sequence (exactly for ``max``, ``first`` and ``last``;
    to rounding for ``mean``). ``pooling``: ``max``, ``mean``, ``first`` or ``last``."""
    x = hidden.detach().float()
    n, t, _ = x.shape
    valid = _valid(n, t, lengths, mask, x.device)
    if pooling == "max":
        return x.masked_fill(~valid[..., None], float("-inf")).amax(1)
    if pooling == "mean":
        return (x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
    positions = torch.arange(t, device=x.device)[None, :].expand(n, t)
    if pooling == "first":
        index = positions.masked_fill(~valid, t).amin(1)
    elif pooling == "last":
        index = positions.masked_fill(~valid, -1).amax(1)
    else:
        raise ValueError(f"pooling {pooling!r}: give max, mean, first or last")
    return x[torch.arange(n, device=x.device), index.clamp(0, t - 1)]


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
        self._pooling = {tap: auditor.tap_pooling(tap) for tap, _ in self._taps}
        named = dict(model.named_modules())
        for position, (tap, kind) in enumerate(self._taps):
            if kind in _FROM_OUTCOME and tap not in modules:
                continue
            name = modules[tap]
            if name not in named:
                raise ValueError(f"tap '{tap}': the model has no module named '{name}'")
            hook = named[name].register_forward_hook(self._capture_hook(position, kind))
            self._handles.append(hook)
        self._outcome_position = next(
            (i for i, (tap, kind) in enumerate(self._taps) if kind == "outcome" and tap not in modules), None
        )
        self._logprobs_position, self._logits_position = (
            next((i for i, (tap, k) in enumerate(self._taps) if k == kind and tap not in modules), None)
            for kind in ("token_logprobs", "token_logits")
        )
        self._handles.append(model.register_forward_hook(self._model_hook))

    @contextlib.contextmanager
    def samples(self, ids, cohort=None, lengths=None, mask=None):
        """The sample ids of the batch the model runs inside this block (this thread only), and
        the cohort to submit them in (default: ``attach``'s). Without it, samples get ids
        counted from 2**62. For sequences, ``lengths`` ([N], right padding) or ``mask`` ([N, T],
        e.g. the tokenizer's ``attention_mask``) say which tokens count."""
        previous = tuple(getattr(self._local, k, None) for k in ("ids", "cohort", "tokens"))
        self._local.ids, self._local.cohort, self._local.tokens = ids, cohort, (lengths, mask)
        try:
            yield self
        finally:
            self._local.ids, self._local.cohort, self._local.tokens = previous

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
            if isinstance(output, (tuple, list)):
                output = output[0]
            if not output.is_cpu or output.requires_grad:
                captured[position] = prepare(output, kind, tap)
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

    def _prepare(self, tensor, kind, tap=None):
        tensor = tensor.detach()
        if tensor.is_cpu:
            return tensor
        if kind == "activation_map" and tensor.dim() == 4 and not self._head_needs_maps:
            # Only the channel maxima cross to the host.
            return tensor.amax(dim=(2, 3)).cpu()
        if kind == "token_sequence" and tensor.dim() == 3:
            # Only the pooled [N, C] crosses to the host.
            lengths, mask = getattr(self._local, "tokens", None) or (None, None)
            return pool(tensor, self._pooling[tap], lengths, mask).cpu()
        return tensor.cpu()

    def _model_hook(self, _module, inputs, output):
        captured = self._captured()
        self._local.captured = None
        try:
            out = self._outcome(output) if self._outcome is not None else output
            if self._outcome_position is not None:
                captured[self._outcome_position] = self._prepare(out, "outcome")
            lengths, mask = getattr(self._local, "tokens", None) or (None, None)
            if self._logprobs_position is not None:
                # Scored where the logits are; each token from the ones before it.
                captured[self._logprobs_position] = token_scores(out.detach(), inputs[0]).cpu()
            targets = None
            if self._logits_position is not None:
                # The library scores them: the logits as they are, with the tokens read.
                captured[self._logits_position] = out.detach().cpu()
                targets = inputs[0].detach().cpu()
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
            tokens = self._tokens(captured, lengths, mask)
            self.auditor.submit(ids, captured, None if cohort == "default" else cohort, targets=targets, **tokens)
            with self._lock:
                self.batches += 1
        except MintError as error:
            self._count(getattr(error, "status", type(error).__name__))
        except (TypeError, ValueError):
            self._count("BAD_IDS")

    def _tokens(self, captured, lengths, mask):
        """``submit``'s lengths or mask by tap: as given for the hidden states (the pooled ones
        need none), one position fewer for token scores."""
        if lengths is None and mask is None:
            return {}
        lengths = None if lengths is None else torch.as_tensor(lengths).cpu()
        mask = None if mask is None else torch.as_tensor(mask).cpu()
        selected = {}
        for (tap, kind), tensor in zip(self._taps, captured):
            if (kind == "token_sequence" and tensor.dim() == 3) or kind == "token_logits":
                selected[tap] = lengths if mask is None else mask
            elif kind == "token_logprobs":
                if mask is None:
                    selected[tap] = lengths - 1
                else:
                    m = mask != 0
                    selected[tap] = m[:, :-1] & m[:, 1:]
        return {"mask" if mask is not None else "lengths": selected}

    def _count(self, status):
        with self._lock:
            self.errors[status] = self.errors.get(status, 0) + 1


def attach(model, auditor, modules=None, outcome=None, cohort=None):
    """Attaches ``auditor`` to ``model``: returns the ``AuditHooks``.

    - ``modules``: tap name -> module name, for taps whose module is not found from the
      configuration's ONNX tensor name; a tap of kind ``outcome`` listed here is taken from
      that module's output instead of the model's. A ``token_logprobs`` tap not listed is
      computed from the outcome (the logits) and the model's first input (the tokens); a
      ``token_logits`` tap not listed is the outcome, scored by the library on that input.
    - ``outcome``: a function picking the outcome tensor from the model's output (default:
      the output itself).
    - ``cohort``: the cohort every batch is submitted in (default: ``default``).
    """
    modules = dict(modules or {})
    for tap, kind in auditor.taps:
        if tap in modules or kind in _FROM_OUTCOME:
            continue
        tensor = auditor.tap_tensor(tap)
        name = module_for_tensor(tensor) if tensor else None
        if name is None:
            raise ValueError(f"tap '{tap}': no module found from its tensor {tensor!r}; name it in `modules`")
        modules[tap] = name
    return AuditHooks(model, auditor, modules, outcome, cohort, auditor.head_kind == "cnn")
