"""`--dtype auto` decisions from injected capabilities and timings (no timing is asserted), and
the chosen dtype reaching the weights and the KV cache."""

import pytest
import torch

from callm.config import EngineConfig
from callm.model_executor import dtype as dtype_mod
from callm.model_executor.dtype import decide, resolve_dtype

# (fp32 seconds, bf16 seconds) per probe shape
AMX_LIKE = {"decode": (2.0e-4, 1.0e-4), "prefill": (8.0e-3, 2.0e-3)}  # bf16 2x / 4x faster
AVX2_LIKE = {"decode": (4.0e-4, 3.0e-4), "prefill": (2.0e-3, 1.0e-2)}  # bf16 5x slower prefill
SLOW_GEMV = {"decode": (2.0e-4, 1.0e-2), "prefill": (2.0e-2, 1.0e-2)}  # bf16 GEMV not native
TIE = {"decode": (1.0e-3, 1.0e-3), "prefill": (1.0e-3, 0.95e-3)}


def fail_probe():
    raise AssertionError("an explicit dtype must not probe")


@pytest.mark.parametrize("name", ["bfloat16", "float32", "float16"])
def test_explicit_dtype_passes_through(name):
    choice = resolve_dtype(name, probe=fail_probe)
    assert choice.dtype == name and choice.reason == "explicit"


def test_unknown_dtype_is_an_error():
    with pytest.raises(ValueError, match="unsupported dtype"):
        resolve_dtype("float8")


def test_cuda_auto_is_bf16():
    assert resolve_dtype("auto", device="cuda", probe=fail_probe).dtype == "bfloat16"


@pytest.mark.parametrize("timings, flags, expected", [
    (AMX_LIKE, {"avx512_bf16", "amx_bf16"}, "bfloat16"),
    (AVX2_LIKE, set(), "float32"),
    (SLOW_GEMV, {"avx512_bf16"}, "float32"),  # flags are not proof
    (TIE, {"avx512_bf16"}, "float32"),  # not worth the precision
])
def test_decision_from_measured_speed(timings, flags, expected):
    choice = decide("AVX512", flags, timings)
    assert choice.dtype == expected
    assert "AVX512" in choice.reason and "prefill" in choice.reason and "decode" in choice.reason


@pytest.mark.parametrize("flags, expected", [({"amx_bf16"}, "bfloat16"), (set(), "float32")])
def test_failed_probe_falls_back_to_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(dtype_mod, "cpu_flags", lambda: flags)

    def broken():
        raise RuntimeError("no")

    choice = resolve_dtype("auto", probe=broken)
    assert choice.dtype == expected and "probe unavailable" in choice.reason


def test_auto_never_picks_float16():
    for timings in (AMX_LIKE, AVX2_LIKE, SLOW_GEMV, TIE, None):
        assert decide("AVX2", set(), timings).dtype in ("bfloat16", "float32")


def test_the_real_probe_returns_both_shapes():
    timings = dtype_mod.probe_cpu(reps=1)
    assert set(timings) == {"decode", "prefill"}
    assert all(t > 0 for pair in timings.values() for t in pair)


def test_config_defaults_and_thread_validation():
    assert EngineConfig().dtype == "auto" and EngineConfig().num_threads is None
    with pytest.raises(ValueError, match="num_threads"):
        EngineConfig(num_threads=0)


def test_cli_defaults():
    from callm.entrypoints.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.dtype == "auto" and args.num_threads is None
    args = build_parser().parse_args(["serve", "--dtype", "float32", "--num-threads", "1"])
    assert args.dtype == "float32" and args.num_threads == 1


@pytest.mark.parametrize("requested, measured, expected", [
    ("float32", None, torch.float32),
    ("bfloat16", None, torch.bfloat16),
    ("auto", AVX2_LIKE, torch.float32),
    ("auto", AMX_LIKE, torch.bfloat16),
])
def test_weights_and_kv_cache_follow_the_dtype(monkeypatch, tiny_llama_dir, requested, measured,
                                               expected):
    from callm.engine.llm_engine import LLMEngine

    monkeypatch.setattr(dtype_mod, "probe_cpu", lambda: measured)
    monkeypatch.setattr(dtype_mod, "cpu_flags", lambda: set())
    threads = torch.get_num_threads()
    try:
        engine = LLMEngine(model=str(tiny_llama_dir), dtype=requested, num_threads=1,
                           max_model_len=128, kv_cache_memory=2**20)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert engine.config.dtype == str(expected).removeprefix("torch.")
    assert next(engine.executor.model.parameters()).dtype == expected
    assert engine.executor.worker.kv_cache.dtype == expected
