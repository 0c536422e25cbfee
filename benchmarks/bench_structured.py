"""Structured outputs: what a grammar costs per decode step, and what compiling one costs.

Step time: B requests decode side by side on the embedded SmolLM2 (bf16), first free, then each
under a JSON-Schema grammar that stays open for the whole measurement (an array of at least
1000 strings: string states allow most of the vocabulary, so the mask is dense and every row
is really masked). Free and constrained runs alternate `--rounds` times; each round's median
step is taken and the best round of each kind compared ("overhead"; on a shared 2-core
machine still noisy, a few % either way). "grammar ms"
is the engine's own batch bitmask work per step, timed inside the step (filling it, applying
it) and "grammar/free" that work relative to a free step: the overhead without the noise.
Advancing a matcher is timed per token on its own.

Compile time, per backend: the 22 test schemas as named-function tool grammars in the Hermes
format (structural tags) and as plain JSON Schemas — cold (cache cleared) and cached (the
manager's LRU) — plus a matcher's creation; and the backend's one-off tokenizer setup.

    python benchmarks/bench_structured.py [--backends xgrammar,llguidance,outlines]
                                          [--batches 1,8,32] [--steps 16] [--rounds 3]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from structured_schemas import CASES  # noqa: E402

from callm.engine.llm_engine import LLMEngine  # noqa: E402
from callm.engine.sampling_params import SamplingParams, StructuredOutputsParams  # noqa: E402
from callm.entrypoints.chat_utils import default_chat_template, render_chat  # noqa: E402
from callm.entrypoints.openai.protocol import ChatCompletionRequest  # noqa: E402
from callm.tool_parsers import ToolParserManager  # noqa: E402
from callm.tool_parsers.grammar import plan_tool_choice  # noqa: E402

LONG_JSON = {"type": "array", "items": {"type": "string"}, "minItems": 1000}
QUESTION = "List as many fruits as you can, as a JSON array of strings."


def prompt_ids(engine: LLMEngine) -> list[int]:
    template = default_chat_template(engine.tokenizer)
    text = render_chat(engine.tokenizer, [{"role": "user", "content": QUESTION}],
                       chat_template=template)
    return engine.tokenizer.encode(text, add_special_tokens=False)


def decode_step_ms(engine: LLMEngine, prompt: list[int], batch: int, params: SamplingParams,
                   steps: int, grammar_clock: list[float]) -> tuple[float, float]:
    """Median wall ms of one decode step of `batch` requests, and mean grammar ms per step."""
    ids = [f"bench-{time.monotonic_ns()}-{i}" for i in range(batch)]
    for request_id in ids:
        engine.add_request(request_id, prompt, params)
    reqs = [r for request_id in ids for r in engine.groups[request_id]]
    while any(r.num_output_tokens == 0 for r in reqs):  # prefill (and the first tokens)
        engine.step()
    for _ in range(2):  # warm-up decode steps
        engine.step()
    grammar_clock[0] = 0.0
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - start)
    grammar = grammar_clock[0] / steps
    assert all(not r.finished for r in reqs), "a request finished during the measurement"
    engine.abort_request(ids)
    return statistics.median(times) * 1e3, grammar * 1e3


def instrument(engine: LLMEngine) -> list[float]:
    """Accumulate the seconds the engine spends on the batch bitmask (fill + apply)."""
    clock = [0.0]
    apply = engine._apply_grammars

    def timed_apply(*args):
        start = time.perf_counter()
        try:
            return apply(*args)
        finally:
            clock[0] += time.perf_counter() - start

    engine._apply_grammars = timed_apply
    return clock


def step_times(engine, backends, batches, steps, rounds) -> None:
    prompt = prompt_ids(engine)
    clock = instrument(engine)
    print(f"\n## decode step time, SmolLM2-135M bf16, prompt {len(prompt)} tokens, "
          f"best of {rounds} rounds of {steps} steps (median step)")
    print(f"{'backend':11} {'batch':>5} {'free ms':>9} {'constrained ms':>15} {'overhead':>9} "
          f"{'grammar ms':>11} {'grammar/free':>13}")
    free = SamplingParams(temperature=0, max_tokens=10_000, ignore_eos=True)
    for backend in backends:
        constrained = SamplingParams(temperature=0, max_tokens=10_000,
                                     structured_outputs=StructuredOutputsParams(
                                         json=LONG_JSON, backend=backend))
        engine.structured_outputs.compile(constrained.structured_outputs)  # not timed here
        for batch in batches:
            free_ms, con_ms, gram_ms = [], [], []
            for _ in range(rounds):
                free_ms.append(decode_step_ms(engine, prompt, batch, free, steps, clock)[0])
                total, grammar = decode_step_ms(engine, prompt, batch, constrained, steps, clock)
                con_ms.append(total)
                gram_ms.append(grammar)
            # interference from other work only adds time: the best round is the cleanest
            f, c, g = min(free_ms), min(con_ms), statistics.median(gram_ms)
            print(f"{backend:11} {batch:5d} {f:9.2f} {c:15.2f} {100 * (c / f - 1):8.1f}% "
                  f"{g:11.3f} {100 * g / f:12.1f}%")


def accept_cost(engine, backends) -> None:
    """Per-token cost of advancing a matcher (not in the step figures' 'grammar ms')."""
    tokenizer = engine.tokenizer
    text = '["apple", "banana", "cherry", "dragon fruit", "elderberry", "fig", "grape"'
    tokens = tokenizer.encode(text, add_special_tokens=False)
    print("\n## advancing a matcher (per sampled token)")
    for backend in backends:
        compiled = engine.structured_outputs.compile(
            StructuredOutputsParams(json=LONG_JSON, backend=backend))
        runs = []
        for _ in range(20):
            matcher = engine.structured_outputs.new_matcher(compiled)
            start = time.perf_counter()
            for t in tokens:
                assert matcher.accept_token(t)
            runs.append((time.perf_counter() - start) / len(tokens))
        print(f"{backend:11} {statistics.median(runs) * 1e6:8.1f} µs")


def compile_times(engine, backends) -> None:
    hermes = ToolParserManager.get_tool_parser("hermes")
    constraints = []
    for spec, _ in CASES:
        request = ChatCompletionRequest(messages=[{"role": "user", "content": "x"}],
                                        tools=[spec], tool_choice={
                                            "type": "function",
                                            "function": {"name": spec["function"]["name"]}})
        tag = plan_tool_choice(request, hermes).structured_outputs.structural_tag
        parameters = spec["function"].get("parameters") or {"type": "object"}
        constraints.append(("tool call", dict(structural_tag=tag)))
        constraints.append(("JSON schema", dict(json=parameters)))
    print(f"\n## compile time, {len(CASES)} schemas as named tool calls (Hermes structural "
          "tags) and as JSON Schemas")
    print(f"{'backend':11} {'setup s':>8} {'kind':12} {'cold mean ms':>13} {'cold max ms':>12} "
          f"{'cached µs':>10} {'matcher ms':>11}")
    manager = engine.structured_outputs
    for backend in backends:
        start = time.perf_counter()
        manager.backend(backend)
        setup = time.perf_counter() - start
        for kind in ("tool call", "JSON schema"):
            cold, cached, matcher = [], [], []
            for label, fields in constraints:
                if label != kind:
                    continue
                params = StructuredOutputsParams(backend=backend, **fields)
                manager.clear_cache()
                start = time.perf_counter()
                compiled = manager.compile(params)
                cold.append(time.perf_counter() - start)
                start = time.perf_counter()
                manager.compile(params)
                cached.append(time.perf_counter() - start)
                start = time.perf_counter()
                manager.new_matcher(compiled)
                matcher.append(time.perf_counter() - start)
            print(f"{backend:11} {setup:8.2f} {kind:12} {statistics.mean(cold) * 1e3:13.2f} "
                  f"{max(cold) * 1e3:12.2f} {statistics.median(cached) * 1e6:10.1f} "
                  f"{statistics.mean(matcher) * 1e3:11.2f}")
            setup = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="xgrammar,llguidance,outlines")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    backends = args.backends.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    engine = LLMEngine(model="smollm2-135m-instruct", max_model_len=2048,
                       kv_cache_memory=256 * 2**20, enable_prefix_caching=True)
    compile_times(engine, backends)
    accept_cost(engine, backends)
    step_times(engine, backends, batches, args.steps, args.rounds)


if __name__ == "__main__":
    main()
