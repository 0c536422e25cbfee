"""Engine invariants on a tiny random model (float32, so batching cannot change a greedy token):
batched = alone, prefix caching on = off, preemption and chunked prefill change nothing, seeded
sampling ignores batch composition, and every block comes back."""

import pytest

from callm.engine.llm_engine import LLMEngine
from callm.engine.sampling_params import SamplingParams

PROMPTS = [
    "The quick brown fox",
    "You are a helpful assistant with tools. " * 6 + "What is the weather in Paris?",
    "You are a helpful assistant with tools. " * 6 + "Book a table for two.",
    "1, 2, 3,",
    "Une phrase en français avec des accents: été, garçon.",
]


def make_engine(model_dir, **overrides) -> LLMEngine:
    args = dict(model=str(model_dir), dtype="float32", block_size=4, max_num_seqs=16,
                max_num_batched_tokens=256, max_model_len=512, kv_cache_memory=4 * 2**20)
    args.update(overrides)
    return LLMEngine(**args)


def run(engine: LLMEngine, prompts, params) -> dict[str, list[list[int]]]:
    params = params if isinstance(params, list) else [params] * len(prompts)
    for i, (prompt, p) in enumerate(zip(prompts, params)):
        engine.add_request(str(i), prompt, p)
    done = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
    return [done[str(i)] for i in range(len(prompts))]


def tokens(outputs) -> list[list[int]]:
    return [[o.token_ids for o in out.outputs] for out in outputs]


GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)


@pytest.fixture(scope="module")
def engine(tiny_llama_dir):
    return make_engine(tiny_llama_dir)


@pytest.fixture(scope="module")
def alone(engine):
    """Each prompt run on its own: the reference for every invariant."""
    return [tokens(run(engine, [p], GREEDY))[0] for p in PROMPTS]


def test_batched_equals_alone(engine, alone):
    assert tokens(run(engine, PROMPTS, GREEDY)) == alone
    outputs = run(engine, PROMPTS, GREEDY)
    assert all(len(o.outputs[0].token_ids) == 24 for o in outputs)
    assert len({tuple(t[0]) for t in alone}) == len(PROMPTS)  # the model does vary


def test_prefix_caching_changes_nothing(tiny_llama_dir, alone):
    cached = make_engine(tiny_llama_dir, enable_prefix_caching=True)
    run(cached, PROMPTS[1:2], GREEDY)  # warm the shared system prompt
    outputs = run(cached, PROMPTS, GREEDY)
    assert tokens(outputs) == alone
    assert outputs[2].num_cached_tokens > 0  # the shared prefix was reused
    assert cached.block_manager.prefix_hit_rate > 0
    uncached = make_engine(tiny_llama_dir, enable_prefix_caching=False)
    assert tokens(run(uncached, PROMPTS, GREEDY)) == alone
    assert uncached.block_manager.prefix_hits == 0


def test_preemption_changes_nothing(tiny_llama_dir, alone):
    """A KV cache too small for all requests at once forces preempt-and-recompute."""
    block_bytes = 2 * 2 * 4 * 2 * 16 * 4  # (k, v) x layers x tokens x kv heads x head dim x fp32
    engine = make_engine(tiny_llama_dir, kv_cache_memory=40 * block_bytes, max_model_len=128)
    assert engine.block_manager.num_blocks == 40  # 160 tokens of KV for ~300 needed
    assert tokens(run(engine, PROMPTS, GREEDY)) == alone
    assert engine.scheduler.num_preemptions > 0


@pytest.mark.parametrize("budget", [7, 32])
def test_chunked_prefill_changes_nothing(tiny_llama_dir, alone, budget):
    engine = make_engine(tiny_llama_dir, max_num_batched_tokens=budget)
    assert tokens(run(engine, PROMPTS, GREEDY)) == alone


def test_seeded_sampling_ignores_batch_composition(engine):
    seeded = SamplingParams(temperature=1.0, top_p=0.9, seed=1234, max_tokens=16, ignore_eos=True)
    solo = tokens(run(engine, [PROMPTS[0]], seeded))[0]
    others = [SamplingParams(temperature=1.0, max_tokens=16, seed=7),
              SamplingParams(temperature=0.7, max_tokens=9)]
    mixed = run(engine, [PROMPTS[3], PROMPTS[0], PROMPTS[4]], [others[0], seeded, others[1]])
    assert tokens(mixed)[1] == solo
    different_seed = SamplingParams(temperature=1.0, top_p=0.9, seed=4321, max_tokens=16,
                                    ignore_eos=True)
    assert tokens(run(engine, [PROMPTS[0]], different_seed))[0] != solo


def test_n_samples_are_distinct_and_indexed(engine):
    out = run(engine, [PROMPTS[0]], SamplingParams(n=3, temperature=1.0, seed=3, max_tokens=8,
                                                  ignore_eos=True))[0]
    assert [o.index for o in out.outputs] == [0, 1, 2]
    assert len({tuple(o.token_ids) for o in out.outputs}) > 1


def test_stop_strings_are_cut_from_the_text(engine, alone):
    free_text = run(engine, [PROMPTS[0]], GREEDY)[0].outputs[0].text
    stop = free_text[5:8]
    assert stop.strip() and stop not in free_text[:7]
    out = run(engine, [PROMPTS[0]], SamplingParams(temperature=0, max_tokens=24, stop=[stop],
                                                   ignore_eos=True))[0].outputs[0]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert free_text.startswith(out.text) and stop not in out.text
    assert len(out.text) <= 5 + 2


def test_max_tokens_and_min_tokens(engine):
    eos = engine.tokenizer.eos_token_id
    out = run(engine, [PROMPTS[0]], SamplingParams(temperature=0, max_tokens=5))[0].outputs[0]
    assert out.finish_reason in ("length", "stop") and len(out.token_ids) <= 5
    # Force EOS: min_tokens must hold it back until 6 tokens exist.
    forced = SamplingParams(temperature=0, max_tokens=10, min_tokens=6,
                            logits_processors=[lambda ids, logits: _boost(logits, eos)])
    out = run(engine, [PROMPTS[0]], forced)[0].outputs[0]
    assert out.finish_reason == "stop" and len(out.token_ids) == 7 and out.token_ids[-1] == eos
    ignoring = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True,
                              logits_processors=[lambda ids, logits: _boost(logits, eos)])
    out = run(engine, [PROMPTS[0]], ignoring)[0].outputs[0]
    assert out.finish_reason == "length" and len(out.token_ids) == 10


def _boost(logits, token_id):
    logits[token_id] += 1000.0
    return logits


def test_logprobs(engine):
    out = run(engine, [PROMPTS[0]], SamplingParams(temperature=0, max_tokens=4, logprobs=3,
                                                   ignore_eos=True))[0].outputs[0]
    assert len(out.logprobs) == 4
    for entry, token in zip(out.logprobs, out.token_ids):
        assert entry["token_id"] == token and entry["logprob"] <= 0
        assert len(entry["top"]) == 3 and entry["top"][0][0] == token  # greedy = the best
    assert out.cumulative_logprob == pytest.approx(sum(e["logprob"] for e in out.logprobs))


def test_abort_frees_blocks_even_mid_prefill(tiny_llama_dir):
    engine = make_engine(tiny_llama_dir, max_num_batched_tokens=8)
    engine.add_request("long", PROMPTS[1], GREEDY)
    engine.add_request("short", PROMPTS[0], GREEDY)
    engine.step()  # the long prompt is only partly computed
    assert engine.block_manager.num_free_blocks < engine.block_manager.num_blocks
    engine.abort_request(["long", "short"])
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_bad_requests_are_clear_errors(engine):
    with pytest.raises(ValueError, match="context"):
        engine.add_request("big", [5] * 600, GREEDY)
    with pytest.raises(ValueError, match="empty"):
        engine.add_request("empty", [], GREEDY)
    with pytest.raises(ValueError, match="token ids"):
        engine.add_request("oob", [10**9], GREEDY)
    assert not engine.has_unfinished_requests()
