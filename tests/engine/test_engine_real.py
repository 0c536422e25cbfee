"""The engine invariants on the real embedded SmolLM2 (float32): batched = alone, and prefix
caching, a tiny KV cache (preemption) and small chunks change no greedy token."""

import pytest
from test_engine import make_engine, run, tokens

from callm.engine.sampling_params import SamplingParams

PROMPTS = ["<|im_start|>system\nYou are a travel assistant with tools.<|im_end|>\n"
           f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
           for q in ("What's the weather in Paris?", "Book a table for two in Rome.",
                     "How far is Oslo from Bergen?")] + ["def fibonacci(n):"]
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


@pytest.fixture(scope="module")
def alone():
    engine = make_engine("smollm2-135m-instruct", block_size=16, kv_cache_memory=32 * 2**20)
    return [tokens(run(engine, [p], GREEDY))[0] for p in PROMPTS]


@pytest.mark.parametrize("overrides", [
    {},
    {"enable_prefix_caching": False},
    {"max_num_batched_tokens": 16},
    {"kv_cache_memory": 8 * 737280, "max_model_len": 128},  # 8 blocks of 16 for ~11 needed
], ids=["batched", "no-prefix-cache", "chunked", "preempting"])
def test_batched_equals_alone_on_smollm2(alone, overrides):
    engine = make_engine("smollm2-135m-instruct", **{"block_size": 16,
                                                    "kv_cache_memory": 32 * 2**20, **overrides})
    assert tokens(run(engine, PROMPTS, GREEDY)) == alone
    if "max_model_len" in overrides:
        assert engine.scheduler.num_preemptions > 0
