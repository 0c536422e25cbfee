"""`--dtype auto`: pick the model dtype this machine runs fastest, and the thread count.

CPUs differ: with AVX512-BF16 / AMX a bf16 GEMM is several times faster than fp32; on an
AVX2-only CPU bf16 is emulated and a bf16 GEMM is ~5x *slower*. CPU flags alone are not proof, so
`auto` also times a bf16 and an fp32 matmul of the shapes a small model's linears have (one
token of decode streaming its weights from memory, a chunk of prefill) on the configured threads
— a probe of a few hundred milliseconds at most — and keeps bf16 only when it is faster at both. Ties go to float32 (exact).
Never float16 on CPU. On CUDA, `auto` is bfloat16.
"""

import logging
import math
import os
import time
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

EXPLICIT = ("bfloat16", "float32", "float16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# bf16 must beat fp32 by this much (geometric mean of decode and prefill speedups) to be worth
# its lost precision
MIN_BF16_GAIN = 1.2
# probe shapes, [M, K] @ [K, N]: decode streams a weight bigger than any last-level cache from
# memory, as a decode step streams the model's weights; prefill is compute-bound
PROBE_SHAPES = {"decode": (1, 2048, 16384), "prefill": (128, 1024, 2816)}
PROBE_BUDGET_S = 0.08  # per shape: repetitions until this much time is spent (at least 2)

@dataclass
class DtypeChoice:
    dtype: str  # "bfloat16" | "float32" (| "float16" when asked for explicitly)
    reason: str


def default_num_threads() -> int:
    """All the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_num_threads(num_threads: int | None) -> int:
    """torch's intra-op threads: `num_threads`, or every core by default. Returns the count."""
    threads = num_threads or default_num_threads()
    if threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def cpu_flags() -> set[str]:
    """The bf16-related flags /proc/cpuinfo lists (empty where there is no /proc)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split()) & set(BF16_FLAGS)
    except OSError:
        pass
    return set()


def cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 (older torch)
        return "unknown"


def _time_pair(m: int, k: int, n: int, reps: int) -> tuple[float, float]:
    """Best timings of one [m, k] @ [k, n] product in float32 and in bfloat16, alternated so
    both see the same machine load (the best of several drops a descheduled repetition)."""
    weights = {dt: torch.full((n, k), 0.01, dtype=dt) for dt in (torch.float32, torch.bfloat16)}
    inputs = {dt: torch.full((m, k), 0.5, dtype=dt) for dt in weights}
    best = {dt: math.inf for dt in weights}
    spent, done = 0.0, 0
    while done < reps or (spent < PROBE_BUDGET_S and done < 4 * reps):
        for dt in weights:
            start = time.perf_counter()
            torch.nn.functional.linear(inputs[dt], weights[dt])
            elapsed = time.perf_counter() - start
            spent += elapsed
            if done:  # the first round warms up
                best[dt] = min(best[dt], elapsed)
        done += 1
    return best[torch.float32], best[torch.bfloat16]


def probe_cpu(reps: int = 3) -> dict[str, tuple[float, float]]:
    """Seconds of one matmul, (float32, bfloat16), for a decode-shaped and a prefill-shaped
    product, on the current torch thread count."""
    with torch.inference_mode():
        return {name: _time_pair(*shape, reps) for name, shape in PROBE_SHAPES.items()}


def decide(capability: str, flags: set[str],
           timings: dict[str, tuple[float, float]] | None) -> DtypeChoice:
    """The dtype for a CPU, from its capability, its bf16 flags and the probe's timings
    ({"decode": (fp32_s, bf16_s), "prefill": (fp32_s, bf16_s)}; None if the probe failed)."""
    native = ", ".join(sorted(flags)) or "no avx512_bf16/amx_bf16"
    if not timings:
        dtype = "bfloat16" if flags else "float32"
        return DtypeChoice(dtype, f"CPU {capability}, {native}; probe unavailable, by flags")
    speedups = {name: fp32 / max(bf16, 1e-12) for name, (fp32, bf16) in timings.items()}
    gain = math.prod(speedups.values()) ** (1 / len(speedups))
    measured = ", ".join(f"{name} {s:.2f}x" for name, s in speedups.items())
    use_bf16 = min(speedups.values()) >= 1.0 and gain >= MIN_BF16_GAIN
    verdict = ("bf16 faster" if use_bf16 else
               f"bf16 not clearly faster (needs >= 1.0x each and {MIN_BF16_GAIN}x overall)")
    return DtypeChoice("bfloat16" if use_bf16 else "float32",
                       f"CPU {capability}, {native}; bf16 speed vs fp32 measured: {measured}"
                       f" -> {verdict}")


def resolve_dtype(dtype: str, device: str = "cpu", probe=None) -> DtypeChoice:
    """An explicit dtype as it is; "auto" decided for `device` (CUDA: bfloat16; CPU: by
    capability and a short probe on the current thread count)."""
    if dtype in EXPLICIT:
        return DtypeChoice(dtype, "explicit")
    if dtype != "auto":
        raise ValueError(f"unsupported dtype {dtype!r}; use auto, bfloat16 or float32")
    if device.startswith("cuda"):
        return DtypeChoice("bfloat16", "CUDA")
    try:
        timings = (probe or probe_cpu)()
    except Exception as e:  # noqa: BLE001 (a probe must never stop the engine)
        logger.warning("dtype probe failed (%s); choosing by CPU flags", e)
        timings = None
    return decide(cpu_capability(), cpu_flags(), timings)
