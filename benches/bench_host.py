"""What the Python benchmarks print about the machine they ran on: the CPU model, and the flags that decide
which kernels run (AVX2-only and AVX-512 machines both occur), so that figures from different
machines are never compared unknowingly."""

from pathlib import Path

WANTED = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16")


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "unknown"
    )


def cpu_flags() -> str:
    """The flags of `WANTED` this CPU has, space-separated."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(f for f in WANTED if f in flags) or "none of avx2/avx512"
