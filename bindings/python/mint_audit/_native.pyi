"""Type stubs of mint_audit._native (the Rust extension). Documentation: help(mint_audit.Auditor)."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str
REDUCE_ISA: str
CLOSE_GRACE_S: float

Tensor = Any  # a numpy array or a torch tensor (float32, float16, bfloat16; CPU; any strides)
Integers = Any  # integers or booleans: a numpy array, a CPU torch tensor, or nested lists
PerTap = Union[Integers, Mapping[str, Integers]]  # once for every tap it applies to, or by tap name

def features(
    config: Union[str, os.PathLike, Mapping[str, Any]],
    taps: Union[Sequence[Tensor], Mapping[str, Tensor]],
    lengths: Optional[PerTap] = None,
    mask: Optional[PerTap] = None,
    base_dir: Optional[Union[str, os.PathLike]] = None,
    targets: Optional[PerTap] = None,
) -> Tuple[bytearray, List[int]]: ...

class Stats:
    seen: int
    submitted: int
    audited_member: int
    audited_non_member: int
    audited: int
    dropped: Dict[str, int]
    dropped_total: int
    queue_depth: int

class CloseReport:
    drained: int
    abandoned: int
    stats: Stats
    workers_busy: int
    in_flight: int
    timed_out: bool

class SubmitReport:
    seen: int
    chosen: int
    accepted: int

class AuditResult:
    sample_id: int
    score: float
    verdict: Optional[str]
    dropped: Optional[str]
    @property
    def member(self) -> bool: ...

class Auditor:
    def __init__(
        self,
        config: Union[str, os.PathLike, Mapping[str, Any]],
        on_results: Optional[Callable[[List[AuditResult]], None]] = None,
        base_dir: Optional[Union[str, os.PathLike]] = None,
    ) -> None: ...
    def submit(
        self,
        ids: Sequence[int],
        taps: Union[Sequence[Tensor], Mapping[str, Tensor]],
        cohort: Optional[str] = None,
        lengths: Optional[PerTap] = None,
        mask: Optional[PerTap] = None,
        targets: Optional[PerTap] = None,
    ) -> SubmitReport: ...
    def stats(self, cohort: Optional[str] = None) -> Stats: ...
    def evidence(self, cohort: str = "default") -> Dict[str, Any]: ...
    def close(self, timeout: float = 5.0) -> CloseReport: ...
    def render_metrics(self) -> str: ...
    def tap_tensor(self, tap: str) -> Optional[str]: ...
    def tap_pooling(self, tap: str) -> Optional[str]: ...
    def tap_channels(self, tap: str) -> int: ...
    def channel_maxima(self, tap: str, maps: Tensor) -> bytearray:
        """The per-channel maxima of an activation map ``[N, C, H, W]``, ``N × C`` float32 in a
        bytearray, computed in place as ``submit`` would (a row of NaN for a non-finite map)."""
        ...
    def last_worker_error(self) -> Optional[str]: ...
    @property
    def metrics_address(self) -> Optional[str]: ...
    @property
    def head_sha256(self) -> str: ...
    @property
    def head_kind(self) -> str: ...
    @property
    def taps(self) -> List[Tuple[str, str]]: ...
    @property
    def cohorts(self) -> List[str]: ...
    @property
    def model(self) -> Tuple[str, str]: ...
    def __enter__(self) -> "Auditor": ...
    def __exit__(self, *exc: Any) -> bool: ...

class MintError(Exception):
    status: str
    message: str

class InvalidConfigError(MintError): ...
class HeadDigestMismatchError(MintError): ...
class HeadLoadError(MintError): ...
class InvalidInputError(MintError): ...
class NonFiniteError(MintError): ...
class QueueFullError(MintError): ...
class OverBudgetError(MintError): ...
class ClosedError(MintError): ...
class BackendError(MintError): ...
class FileError(MintError): ...
class BufferTooSmallError(MintError): ...
class ReentrantError(MintError): ...
