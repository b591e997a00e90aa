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

Hugging Face models are audited as serving code calls them: keyword arguments
(``model(**tokenizer(texts, return_tensors="pt", padding=True))``), left or right padding (the
call's ``attention_mask`` says which tokens count unless ``samples()`` says otherwise), a
``ModelOutput`` (its ``logits`` are the outcome) and ``generate()``: its prefill forward audits
the prompt once; the decode steps that follow read a KV cache and are skipped (counted in
``skipped['decode_step']``), so generated tokens are never audited, being the model's output
rather than data it was served. ``transformer_layers(model)`` names a model's blocks from its
``config``.

The hooks never raise into the model's forward: an auditor error (a full queue, a closed
auditor, bad input), a module that returned something unexpected, or a bug of ours is caught,
counted in ``errors`` by kind, and logged once per kind (logger ``mint_audit.torch``); the
library counts the lost samples in its own stats. Concurrent forwards on several threads are
fine: ids, the call's inputs and captured maps are kept per thread.
"""

import contextlib
import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Mapping
from typing import Any

import torch

from . import MintError

__all__ = [
    "attach",
    "AuditHooks",
    "default_outcome",
    "input_ids",
    "module_for_tensor",
    "pool",
    "token_scores",
    "transformer_layers",
    "REDUCE_IN_HOOK_BYTES",
]

_log = logging.getLogger("mint_audit.torch")

#: Tap kinds taken from the model's outcome (and input tokens) unless ``modules`` names them.
_FROM_OUTCOME = ("outcome", "token_logprobs", "token_logits")
#: Tap kinds that read a batch's token selection.
_SEQUENCE_KINDS = ("token_sequence", "token_logprobs", "token_logits")

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
            qualified += scope[len(previous) :]
        else:
            qualified = f"{qualified}.{scope}" if qualified else scope
        previous = scope
    return qualified


def token_scores(logits, tokens, channels=3):
    """``[N, T - 1, 3]`` float32 from a causal language model's ``logits`` ``[N, T, V]`` and its
    input ``tokens`` ``[N, T]``: for the token at position t + 1, its log-probability given the
    tokens before it, and the mean and standard deviation of the log-probabilities of the
    model's next-token distribution at t (Min-K%++'s standardisation). What a
    ``token_logprobs`` tap of 3 channels takes; computed where the logits are. With
    ``channels=1``, ``[N, T - 1]``: the log-probabilities alone (Min-K%, not Min-K%++), one pass
    over the vocabulary instead of several (docs/benchmarks.md: with a vocabulary of 50,257, on
    one CPU thread, the three channels added 21-23% to a GPT-2-small forward at batch 8-32, one
    channel 4-12%)."""
    with torch.no_grad():  # features, never differentiated: the buffers below are reused in place
        return _token_scores(logits, tokens, channels)


def _token_scores(logits, tokens, channels):
    logits = logits[:, :-1].float()
    target = tokens[:, 1:, None].long()
    if channels == 1:
        return (logits.gather(-1, target) - torch.logsumexp(logits, dim=-1, keepdim=True))[..., 0]
    logp = torch.log_softmax(logits, dim=-1)
    actual = logp.gather(-1, target)[..., 0]
    # p·log p, then p·log² p, in one buffer: two vocabulary-sized tensors in all.
    weighted = logp.exp().mul_(logp)
    mu = weighted.sum(-1)
    second = weighted.mul_(logp).sum(-1)
    sigma = (second - mu * mu).clamp(min=0).sqrt()
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
    """The hooks ``attach`` installed; ``remove()`` takes them off.

    - ``batches``: forwards whose samples reached the auditor.
    - ``errors``: failures by status (``MINT_ERR_QUEUE_FULL``, ``MISSING_TAP``, ``NO_INPUT_IDS``,
      ``HOOK_FAILED:RuntimeError``...): the forward completed, the batch was not audited, and
      each kind is logged once (logger ``mint_audit.torch``).
    - ``skipped``: forwards not audited on purpose, by reason: ``decode_step`` (a step of
      ``generate()`` reading a KV cache: its prompt was audited at the prefill) and
      ``repeated_ids`` (a second forward inside one ``samples()`` block, e.g. ``generate()``
      without a cache: those ids were audited once already).
    """

    def __init__(self, model, auditor, modules, outcome, cohort, head_needs_maps):
        self.auditor = auditor
        self.cohort = cohort
        self.errors = {}
        self.skipped = {}
        self.batches = 0
        self._outcome = outcome if outcome is not None else default_outcome
        self._head_needs_maps = head_needs_maps
        self._local = threading.local()
        self._auto_ids = itertools.count(1 << 62)
        self._lock = threading.Lock()
        self._handles = []
        self._taps = auditor.taps
        self._pooling = {tap: auditor.tap_pooling(tap) for tap, _ in self._taps}
        self._sequences = any(kind in _SEQUENCE_KINDS for _, kind in self._taps)
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
        self._logprobs_channels = (
            auditor.tap_channels(self._taps[self._logprobs_position][0]) if self._logprobs_position is not None else 3
        )
        self._handles.append(_watch_calls(model, self._begin))
        self._handles.append(model.register_forward_hook(self._model_hook))

    @contextlib.contextmanager
    def samples(self, ids, cohort=None, lengths=None, mask=None):
        """The sample ids of the batch the model runs inside this block (this thread only), and
        the cohort to submit them in (default: ``attach``'s). Without it, samples get ids
        counted from 2**62. For sequences, ``lengths`` ([N], right padding) or ``mask`` ([N, T])
        say which tokens count; without either, the ``attention_mask`` the model is called with
        does. The ids are audited once: a later forward in the same block (``generate()``
        without a cache) is skipped and counted in ``skipped['repeated_ids']``."""
        keys = ("ids", "cohort", "tokens", "ids_used")
        previous = tuple(getattr(self._local, k, None) for k in keys)
        self._local.ids, self._local.cohort, self._local.tokens = ids, cohort, (lengths, mask)
        self._local.ids_used = False
        try:
            yield self
        finally:
            for key, value in zip(keys, previous):
                setattr(self._local, key, value)

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _captured(self):
        captured = getattr(self._local, "captured", None)
        if captured is None:
            captured = self._local.captured = [None] * len(self._taps)
        return captured

    def _begin(self, args, kwargs):
        """Before the model's forward: what it was called with, and whether to audit it."""
        try:
            self._local.call = (args, kwargs)
            self._local.captured = None
            skip = None
            if _reads_past_tokens(kwargs):
                skip = "decode_step"
            elif getattr(self._local, "ids", None) is not None and getattr(self._local, "ids_used", False):
                skip = "repeated_ids"
            self._local.skip = skip
        except Exception as error:  # noqa: BLE001 - nothing may reach the host's forward
            self._local.skip = "failed"
            self._fail(f"HOOK_FAILED:{type(error).__name__}", error)

    def _capture_hook(self, position, kind):
        # Runs inside the model's forward on every call: kept to a few attribute reads.
        local, captured_now, prepare = self._local, self._captured, self._prepare
        tap, maxima = self._taps[position][0], self.auditor.channel_maxima
        reduce_early = kind == "activation_map" and not self._head_needs_maps

        def hook(_module, _inputs, output):
            if getattr(local, "skip", None) is not None:
                return
            try:
                captured = captured_now()
                if isinstance(output, (tuple, list)):
                    output = output[0]
                if not output.is_cpu or output.requires_grad:
                    captured[position] = prepare(output, kind, tap)
                    return
                # On the CPU a small map is handed over as it is; a large one is reduced now, so
                # that the forward need not hold it until it ends.
                if (
                    reduce_early
                    and output.dim() == 4
                    and output.numel() * output.element_size() >= REDUCE_IN_HOOK_BYTES
                ):
                    try:
                        reduced = maxima(tap, output)
                        captured[position] = torch.frombuffer(reduced, dtype=torch.float32).view(
                            output.shape[0], output.shape[1]
                        )
                        return
                    except MintError:
                        pass  # handed over as it is: submit reports the error and counts the samples
                captured[position] = output
            except Exception as error:  # noqa: BLE001 - nothing may reach the host's forward
                local.skip = "failed"
                self._fail(f"HOOK_FAILED:{type(error).__name__}", error)

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
            lengths, mask = self._selection()
            return pool(tensor, self._pooling[tap], lengths, mask).cpu()
        return tensor.cpu()

    def _selection(self):
        """The tokens that count: ``samples()``'s lengths or mask, else the call's
        ``attention_mask``."""
        lengths, mask = getattr(self._local, "tokens", None) or (None, None)
        if lengths is None and mask is None and self._sequences:
            call: tuple[tuple, dict] = getattr(self._local, "call", None) or ((), {})
            kwargs = call[1]
            given = kwargs.get("attention_mask")
            if given is not None and torch.is_tensor(given) and given.dim() == 2:
                mask = given
        return lengths, mask

    def _model_hook(self, _module, inputs, output):
        captured = self._captured()
        self._local.captured = None
        # The call as `_begin` saw it (or only its positional inputs when it did not run), which
        # `_selection` reads; cleared below, whatever happens.
        args, kwargs = self._local.call = getattr(self._local, "call", None) or (inputs or (), {})
        skip, self._local.skip = getattr(self._local, "skip", None), None
        try:
            if skip == "failed":
                return
            if skip is not None:
                with self._lock:
                    self.skipped[skip] = self.skipped.get(skip, 0) + 1
                return
            self._submit(captured, args, kwargs, output)
        except MintError as error:
            self._fail(getattr(error, "status", type(error).__name__), error)
        except (TypeError, ValueError) as error:
            self._fail("BAD_IDS", error)
        except Exception as error:  # noqa: BLE001 - nothing may reach the host's forward
            self._fail(f"HOOK_FAILED:{type(error).__name__}", error)
        finally:
            self._local.call = None

    def _submit(self, captured, args, kwargs, output):
        needs_outcome = any(
            p is not None for p in (self._outcome_position, self._logprobs_position, self._logits_position)
        )
        # Any: whatever the picker returns, checked to be a tensor before use.
        out: Any = self._outcome(output) if needs_outcome else None
        if needs_outcome and not torch.is_tensor(out):
            self._fail("NO_OUTCOME", TypeError(f"the outcome is a {type(out).__name__}, not a tensor"))
            return
        if self._outcome_position is not None:
            captured[self._outcome_position] = self._prepare(out, "outcome")
        lengths, mask = self._selection()
        targets = None
        if self._logprobs_position is not None or self._logits_position is not None:
            tokens = input_ids(args, kwargs)
            if tokens is None:
                self._fail("NO_INPUT_IDS", ValueError("token scores need the input ids: none in the call"))
                return
            if self._logprobs_position is not None:
                # Scored where the logits are; each token from the ones before it.
                channels = self._logprobs_channels
                captured[self._logprobs_position] = token_scores(out.detach(), tokens, channels).cpu()
            if self._logits_position is not None:
                # The library scores them: the logits as they are, with the tokens read.
                captured[self._logits_position] = out.detach().cpu()
                targets = tokens.detach().cpu()
        if any(t is None for t in captured):
            self._fail("MISSING_TAP", ValueError("a tapped module did not run in this forward"))
            return
        n = captured[0].shape[0]
        ids = getattr(self._local, "ids", None)
        if ids is None:
            with self._lock:
                ids = [next(self._auto_ids) for _ in range(n)]
        else:
            self._local.ids_used = True
            if torch.is_tensor(ids):
                ids = ids.tolist()
        cohort = getattr(self._local, "cohort", None) or self.cohort
        tokens = self._tokens(captured, lengths, mask)
        self.auditor.submit(ids, captured, None if cohort == "default" else cohort, targets=targets, **tokens)
        with self._lock:
            self.batches += 1

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

    def _fail(self, status, error):
        """Counts a failure; the first of each kind is logged (never raised)."""
        with self._lock:
            first = status not in self.errors
            self.errors[status] = self.errors.get(status, 0) + 1
        if first:
            _log.warning(
                "mint_audit.torch: a batch was not audited (%s: %s); further ones are counted in AuditHooks.errors",
                status,
                error,
            )


def default_outcome(output):
    """The outcome in what a model returns: a tensor itself; the ``logits`` of a Hugging Face
    ``ModelOutput`` (or of a dict); else the first element of a tuple, list or
    ``ModelOutput`` (``last_hidden_state`` for an encoder)."""
    if torch.is_tensor(output):
        return output
    logits = getattr(output, "logits", None)
    if torch.is_tensor(logits):
        return logits
    if isinstance(output, Mapping):
        if torch.is_tensor(output.get("logits")):
            return output["logits"]
        return next(iter(output.values()), None)
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return None


def input_ids(args, kwargs):
    """The token ids a language model was called with: ``input_ids=`` or its first positional
    argument. None when it took none (``inputs_embeds``)."""
    given = kwargs.get("input_ids")
    if given is None and args:
        given = args[0]
    return given if torch.is_tensor(given) and given.dim() == 2 else None


def _reads_past_tokens(kwargs):
    """True for a decode step of ``generate()``: the call reads a KV cache of earlier tokens."""
    past = kwargs.get("past_key_values")
    if past is None:
        return False
    length = getattr(past, "get_seq_length", None)
    if callable(length):
        return length() > 0
    # The legacy cache: one (key, value) pair per layer, keys [N, heads, T, d].
    try:
        return len(past) > 0 and past[0][0].shape[-2] > 0
    except (TypeError, IndexError, AttributeError):
        return True


def transformer_layers(model):
    """The module names of a Hugging Face model's transformer blocks, in order, found from
    ``model.config``: the module list holding ``config.num_hidden_layers`` blocks
    (``transformer.h.3`` for GPT-2, ``model.layers.3`` for Llama and Mistral,
    ``bert.encoder.layer.3`` for BERT). A block's output is its hidden states ``[N, T, C]``:
    a ``token_sequence`` tap."""
    config = getattr(model, "config", None)
    count = getattr(config, "num_hidden_layers", None)
    if not isinstance(count, int) or count < 1:
        raise ValueError("the model has no config.num_hidden_layers: name its blocks in `modules`")
    lists = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == count]
    if not lists:
        raise ValueError(f"no module list of {count} blocks (config.num_hidden_layers): name its blocks in `modules`")
    # The outermost one (an encoder-decoder's or a vision tower's lists are deeper, or not this long).
    chosen = min(lists, key=lambda name: (name.count("."), len(name)))
    return [f"{chosen}.{i}" for i in range(count)]


class _CallRecorder:
    """torch < 2.0, whose forward pre-hooks do not see keyword arguments: the model's ``forward``
    is wrapped on the instance (as ``accelerate`` does) to record the call; ``remove()`` restores
    it."""

    def __init__(self, model, begin):
        self._model = model
        self._had_own = "forward" in model.__dict__
        self._original = model.forward

        @functools.wraps(self._original)
        def forward(*args, **kwargs):
            begin(args, kwargs)
            return self._original(*args, **kwargs)

        self._wrapper = forward
        model.forward = forward

    def remove(self):
        if self._model.__dict__.get("forward") is self._wrapper:
            if self._had_own:
                self._model.forward = self._original
            else:
                del self._model.forward


def _watch_calls(model, begin):
    """Calls ``begin(args, kwargs)`` before each forward of ``model``; returns a handle."""
    if "with_kwargs" in inspect.signature(model.register_forward_pre_hook).parameters:
        return model.register_forward_pre_hook(lambda _m, args, kwargs: begin(args, kwargs), with_kwargs=True)
    return _CallRecorder(model, begin)


def attach(model, auditor, modules=None, outcome=None, cohort=None):
    """Attaches ``auditor`` to ``model``: returns the ``AuditHooks``.

    - ``modules``: tap name -> module name, for taps whose module is not found from the
      configuration's ONNX tensor name; a tap of kind ``outcome`` listed here is taken from
      that module's output instead of the model's. A ``token_logprobs`` tap not listed is
      computed from the outcome (the logits) and the model's first input (the tokens); a
      ``token_logits`` tap not listed is the outcome, scored by the library on that input.
    - ``outcome``: a function picking the outcome tensor from the model's output (default:
      ``default_outcome``: the output itself, a ``ModelOutput``'s ``logits``, or the first
      element of a tuple).
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
