"""mint-audit: live Membership Inference Tests (MINT) inside a Python model-serving stack.

Create one :class:`Auditor` from an auditor configuration, hand it each batch's sample ids and
tapped activations (numpy arrays or torch tensors, read in place), and read the verdicts from
its metrics, its stats, or a result callback::

    import mint_audit
    with mint_audit.Auditor("models/fmnist-memorizing/auditor.json") as auditor:
        auditor.submit([1001, 1002], [stage1, stage2, stage3, stage4, logits])
        print(auditor.stats())

``mint_audit.torch`` attaches an auditor to a ``torch.nn.Module`` with forward hooks;
``mint_audit.prometheus`` puts mint's series on a ``prometheus_client`` registry.
"""

import atexit as _atexit
import weakref as _weakref

from ._native import (
    CLOSE_GRACE_S,
    REDUCE_ISA,
    AuditResult,
    BackendError,
    BufferTooSmallError,
    ClosedError,
    CloseReport,
    FileError,
    HeadDigestMismatchError,
    HeadLoadError,
    InvalidConfigError,
    InvalidInputError,
    MintError,
    NonFiniteError,
    OverBudgetError,
    QueueFullError,
    ReentrantError,
    Stats,
    SubmitReport,
    __version__,
    features,
)
from ._native import Auditor as _NativeAuditor

__all__ = [
    "Auditor",
    "AuditResult",
    "features",
    "CloseReport",
    "Stats",
    "SubmitReport",
    "CLOSE_GRACE_S",
    "REDUCE_ISA",
    "__version__",
    "MintError",
    "InvalidConfigError",
    "HeadDigestMismatchError",
    "HeadLoadError",
    "InvalidInputError",
    "NonFiniteError",
    "QueueFullError",
    "OverBudgetError",
    "ClosedError",
    "BackendError",
    "FileError",
    "BufferTooSmallError",
    "ReentrantError",
]

# Auditors still open when the interpreter exits are closed before it shuts down, while their
# worker threads can still take the GIL to deliver the last results.
_open: "_weakref.WeakSet[Auditor]" = _weakref.WeakSet()


class Auditor(_NativeAuditor):
    __doc__ = _NativeAuditor.__doc__

    def __init__(self, *args, **kwargs):
        _open.add(self)


@_atexit.register
def _close_open_auditors():
    for auditor in list(_open):
        try:
            auditor.close(1.0)
        except MintError:
            pass
