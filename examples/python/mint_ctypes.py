"""mint-audit from Python through ctypes: a thin binding of include/mint_audit.h and a demo.

    python3 examples/python/mint_ctypes.py LIBMINT_AUDIT.so CONFIG.json

The demo audits 256 samples of the configured taps with synthetic activations, the way a
PyTorch server would after a forward pass: full maps for the activation taps (NCHW float32,
as `tensor.detach().cpu().numpy()` gives them; torch's `amax(dim=(2, 3))` could hand over
MINT_FORM_CHANNEL_MAX instead) and the logits as vectors. Results arrive on the auditor's
threads through the callback; the metrics are rendered at the end.
"""

import ctypes as C
import json
import sys
import threading

import numpy as np

MINT_OK = 0
MINT_DTYPE_F32 = 0
MINT_FORM_MAP, MINT_FORM_CHANNEL_MAX, MINT_FORM_VECTOR = 0, 1, 2
MINT_LAYOUT_NCHW = 0
MINT_OUTCOME_NON_MEMBER, MINT_OUTCOME_MEMBER = 0, 1


class Tensor(C.Structure):
    _fields_ = [
        ("data", C.c_void_p),
        ("dtype", C.c_uint32),
        ("form", C.c_uint32),
        ("layout", C.c_uint32),
        ("rank", C.c_size_t),
        ("shape", C.POINTER(C.c_int64)),
        ("strides", C.POINTER(C.c_int64)),
    ]


class SampleResult(C.Structure):
    _fields_ = [("sample_id", C.c_uint64), ("score", C.c_float), ("outcome", C.c_uint32)]


RESULTS_FN = C.CFUNCTYPE(None, C.c_void_p, C.POINTER(SampleResult), C.c_size_t)
FREE_FN = C.CFUNCTYPE(None, C.c_void_p)


class ResultSink(C.Structure):
    _fields_ = [("on_results", RESULTS_FN), ("userdata", C.c_void_p), ("free_userdata", FREE_FN)]


class SubmitReport(C.Structure):
    _fields_ = [("seen", C.c_size_t), ("chosen", C.c_size_t), ("accepted", C.c_size_t)]


class Stats(C.Structure):
    _fields_ = [(name, C.c_uint64) for name in (
        "seen", "submitted", "audited_member", "audited_non_member", "dropped_queue_full",
        "dropped_invalid_input", "dropped_non_finite", "dropped_over_budget", "dropped_head_error",
        "dropped_backend_error", "dropped_shutdown", "dropped_closed", "queue_depth")]


class CloseReport(C.Structure):
    _fields_ = [("drained", C.c_uint64), ("abandoned", C.c_uint64), ("stats", Stats)]


class MintError(Exception):
    pass


class Auditor:
    """One auditor; `results` collects (sample_id, score, outcome) from the worker threads."""

    def __init__(self, lib_path, config_path):
        self.lib = lib = C.CDLL(lib_path)
        lib.mint_last_error.restype = C.c_char_p
        lib.mint_status_name.restype = C.c_char_p
        lib.mint_abi_version.restype = C.c_uint32
        lib.mint_auditor_new_from_file.argtypes = [C.c_char_p, C.POINTER(ResultSink), C.POINTER(C.c_void_p)]
        lib.mint_auditor_submit.argtypes = [C.c_void_p, C.POINTER(C.c_uint64), C.c_size_t, C.POINTER(Tensor), C.c_size_t,
                                            C.POINTER(SubmitReport)]
        lib.mint_auditor_render_metrics.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t, C.POINTER(C.c_size_t)]
        lib.mint_auditor_close.argtypes = [C.c_void_p, C.c_uint32, C.POINTER(CloseReport)]
        lib.mint_auditor_free.argtypes = [C.c_void_p]
        if lib.mint_abi_version() >> 16 != 1:
            raise MintError(f"libmint_audit speaks ABI {lib.mint_abi_version() >> 16}, this binding 1")
        self.results = []
        self._lock = threading.Lock()
        # Kept on self: ctypes callbacks must outlive the auditor.
        self._on_results = RESULTS_FN(self._collect)
        self._sink = ResultSink(self._on_results, None, FREE_FN())
        self.handle = C.c_void_p()
        self._check(lib.mint_auditor_new_from_file(config_path.encode(), C.byref(self._sink), C.byref(self.handle)))

    def _collect(self, _userdata, results, count):
        with self._lock:
            self.results.extend((results[i].sample_id, results[i].score, results[i].outcome) for i in range(count))

    def _check(self, status):
        if status != MINT_OK:
            raise MintError(f"{self.lib.mint_status_name(status).decode()}: {self.lib.mint_last_error().decode()}")

    def submit(self, ids, taps):
        """`taps`: one (array, form) per configured tap, in order; float32 C-contiguous arrays."""
        ids = np.ascontiguousarray(ids, dtype=np.uint64)
        keep, descs = [], (Tensor * len(taps))()
        for d, (array, form) in zip(descs, taps):
            array = np.ascontiguousarray(array, dtype=np.float32)
            shape = (C.c_int64 * array.ndim)(*array.shape)
            keep += [array, shape]
            d.data, d.dtype, d.form, d.layout = array.ctypes.data, MINT_DTYPE_F32, form, MINT_LAYOUT_NCHW
            d.rank, d.shape, d.strides = array.ndim, shape, None
        report = SubmitReport()
        status = self.lib.mint_auditor_submit(self.handle, ids.ctypes.data_as(C.POINTER(C.c_uint64)), len(ids), descs,
                                              len(taps), C.byref(report))
        self._check(status)
        return report

    def metrics(self):
        need = C.c_size_t()
        self.lib.mint_auditor_render_metrics(self.handle, None, 0, C.byref(need))
        buf = C.create_string_buffer(need.value)
        self._check(self.lib.mint_auditor_render_metrics(self.handle, buf, need.value, C.byref(need)))
        return buf.value.decode()

    def close(self, timeout_ms=10000):
        report = CloseReport()
        self._check(self.lib.mint_auditor_close(self.handle, timeout_ms, C.byref(report)))
        return report

    def free(self):
        if self.handle:
            self.lib.mint_auditor_free(self.handle)
            self.handle = C.c_void_p()


def main():
    lib_path, config_path = sys.argv[1], sys.argv[2]
    with open(config_path) as f:
        taps = json.load(f)["taps"]
    auditor = Auditor(lib_path, config_path)
    rng = np.random.default_rng(0)
    n = 32
    for batch in range(8):
        arrays = []
        for t in taps:
            if t["kind"] == "outcome":
                arrays.append((rng.normal(size=(n, t["channels"])) * 3, MINT_FORM_VECTOR))
            else:
                h, w = t.get("spatial", [8, 8])
                arrays.append((rng.normal(size=(n, t["channels"], h, w)), MINT_FORM_MAP))
        report = auditor.submit(np.arange(batch * n, (batch + 1) * n), arrays)
        assert report.accepted == n
    closed = auditor.close()
    s = closed.stats
    audited = s.audited_member + s.audited_non_member
    dropped = sum(getattr(s, name) for name, _ in Stats._fields_ if name.startswith("dropped_"))
    print(f"submitted {s.submitted} = audited {audited} + dropped {dropped}; "
          f"{len(auditor.results)} results reached the callback")
    assert s.submitted == audited + dropped == len(auditor.results) == 8 * n
    print("\n".join(line for line in auditor.metrics().splitlines() if line.startswith("mint_samples_")))
    auditor.free()


if __name__ == "__main__":
    main()
