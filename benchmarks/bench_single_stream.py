"""One request at a time: what a single user sees, callm against llama.cpp on the same GGUF.

For each model (default: SmolLM2-135M Q4_1 and Qwen2.5-Coder-0.5B Q4_K_M) and each callm
configuration `dtype/quantization` (default: auto/auto, bfloat16/none, float32/none,
auto/int8, auto/int4, in the same run):
- decode: 128 new tokens after a short chat prompt -> decode tokens/s;
- prefill: a ~650-token prompt carrying four tool definitions -> TTFT and prefill tokens/s;
- per-step overhead: a decode step's wall time minus its forward pass (scheduler, metadata,
  sampler, detokenizer, outputs), median over the decode steps;
- accuracy: perplexity of a fixed text against the float32 unquantized model (the GGUF's
  weights exactly), as a percentage change, and the share of positions whose greedy token
  agrees with it.
Each callm row also prints its ratio to llama.cpp (decode, prefill, TTFT: >1 is callm faster).
With `--async`, the decode also runs through AsyncLLMEngine (the server's streaming path).

llama.cpp runs side by side (same GGUF file, `--llama-threads`, default 2) when `llama_cpp` is
importable; it is an optional benchmark dependency, built from source:

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install -c constraints.txt llama-cpp-python==0.3.36

    python benchmarks/bench_single_stream.py [--models A,B] [--configs auto/auto,float32/none]
        [--num-threads N] [--max-tokens 128] [--repeats 3] [--async] [--no-llama] [--profile]
"""

import argparse
import asyncio
import cProfile
import io
import json
import logging
import math
import pstats
import statistics
import time

import torch

from callm.engine.llm_engine import LLMEngine
from callm.engine.sampling_params import SamplingParams
from callm.entrypoints.chat_utils import default_chat_template, render_chat
from callm.model_executor.dtype import cpu_capability, cpu_flags
from callm.model_files import load_tokenizer, resolve_model

SHORT = [{"role": "user", "content": "Write a short story about a robot learning to paint."}]


def _tool(name: str, description: str, props: dict) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": props, "required": list(props)}}}


TOOLS = [
    _tool("get_weather", "Get the current weather and a three-day forecast for a city.", {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}),
    _tool("search_flights", "Search direct and one-stop flights between two airports.", {
        "origin": {"type": "string", "description": "IATA code of the departure airport"},
        "destination": {"type": "string", "description": "IATA code of the arrival airport"},
        "date": {"type": "string", "description": "Departure date, YYYY-MM-DD"},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9}}),
    _tool("book_restaurant", "Book a table at a restaurant, returning a confirmation code.", {
        "restaurant": {"type": "string"}, "time": {"type": "string", "description": "HH:MM"},
        "party_size": {"type": "integer"}, "notes": {"type": "string"}}),
    _tool("convert_currency", "Convert an amount between two currencies at today's rate.", {
        "amount": {"type": "number"}, "from_currency": {"type": "string"},
        "to_currency": {"type": "string"}}),
]
LONG = [{"role": "system", "content": "You are a travel and productivity assistant. Use the "
                                      "tools when they help; ask before sending anything."},
        {"role": "user", "content": "I land in Lisbon on Friday. What will the weather be, can "
                                    "you find me a flight back to Paris on Sunday, and book "
                                    "dinner for two at 20:00 somewhere near the river?"}]


def prompts(engine: LLMEngine) -> tuple[list[int], list[int]]:
    template = default_chat_template(engine.tokenizer, engine.config.model)
    tok = engine.tokenizer
    short = tok.encode(render_chat(tok, SHORT, chat_template=template), add_special_tokens=False)
    long = tok.encode(render_chat(tok, LONG, TOOLS, chat_template=template),
                      add_special_tokens=False)
    return short, long


class ForwardTimer:
    """Wraps the executor's execute_model and records each call's seconds."""

    def __init__(self, executor):
        self.inner = executor.execute_model
        self.times: list[float] = []
        executor.execute_model = self

    def __call__(self, seqs):
        start = time.perf_counter()
        out = self.inner(seqs)
        self.times.append(time.perf_counter() - start)
        return out


def run_one(engine: LLMEngine, timer: ForwardTimer, prompt: list[int], max_tokens: int,
            rid: str) -> dict:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    timer.times.clear()
    step_times, token_times = [], []
    start = time.perf_counter()
    engine.add_request(rid, prompt, params)
    while engine.has_unfinished_requests():
        t0 = time.perf_counter()
        outs = engine.step()
        t1 = time.perf_counter()
        step_times.append(t1 - t0)
        if outs:
            token_times.append(t1)
    ttft = token_times[0] - start
    decode_s = token_times[-1] - token_times[0]
    # steps after the prefill step are batch-1 decode steps
    overhead = [s - f for s, f in zip(step_times[1:], timer.times[1:])]
    return {"prompt_tokens": len(prompt), "ttft_s": ttft,
            "prefill_tok_s": len(prompt) / ttft,
            "decode_tok_s": (len(token_times) - 1) / decode_s if decode_s > 0 else float("nan"),
            "step_ms": 1e3 * statistics.median(step_times[1:]) if overhead else float("nan"),
            "forward_ms": 1e3 * statistics.median(timer.times[1:]) if overhead else float("nan"),
            "overhead_ms": 1e3 * statistics.median(overhead) if overhead else float("nan")}


def run_async(engine: LLMEngine, prompt: list[int], max_tokens: int) -> float:
    """Decode tokens/s as a streaming client of AsyncLLMEngine sees them."""
    from callm.engine.async_engine import AsyncLLMEngine

    async_engine = AsyncLLMEngine(engine)

    async def consume():
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        times = []
        async for _ in async_engine.generate(prompt, params, "async-0"):
            times.append(time.perf_counter())
        return (len(times) - 1) / (times[-1] - times[0])

    try:
        return asyncio.run(consume())
    finally:
        async_engine._stopped = True  # stop the loop thread; keep the engine for the caller
        async_engine._wakeup.set()
        async_engine._thread.join(timeout=30)


def best(runs: list[dict]) -> dict:
    """Per metric, the best of the repeats (least disturbed by the rest of the machine)."""
    higher = ("prefill_tok_s", "decode_tok_s")
    return {k: (max if k in higher else min)(r[k] for r in runs) for k in runs[0]}


TEXT = ("The old lighthouse keeper climbed the spiral stairs every evening at dusk. He wound the "
        "clockwork, trimmed the wick and polished the great lens until it shone. Ships passing "
        "the rocky point had relied on his light for forty years.\n\nTo compute the average "
        "of a list of numbers, add them together and divide the sum by how many numbers there "
        "are. In Python this is sum(values) / len(values), and an empty list must be handled "
        "first, because dividing by zero raises an exception.\n\nThe weather in Paris is "
        "usually mild in spring, with temperatures between ten and twenty degrees Celsius. "
        "Visitors should pack an umbrella, since short showers are common in April.")


def text_logits(model, tokens: list[int]) -> torch.Tensor:
    """Logits at every position of TEXT, one prefill over a cache of its own."""
    from callm.model_executor.worker import SequenceInput, Worker, build_batch

    worker = Worker(model, num_blocks=-(-len(tokens) // 16), block_size=16)
    ids, positions, meta = build_batch(
        [SequenceInput(tokens, 0, list(range(worker.num_blocks)))], 16)
    with torch.inference_mode():
        return model.compute_logits(model(ids, positions, meta))


def perplexity(logits: torch.Tensor, tokens: list[int]) -> float:
    loss = torch.nn.functional.cross_entropy(logits[:-1].float(), torch.tensor(tokens[1:]))
    return math.exp(loss.item())


def bench_callm(args, model: str, dtype: str, quantization: str) -> dict:
    engine = LLMEngine(model=model, dtype=dtype, quantization=quantization,
                       num_threads=args.num_threads, enable_prefix_caching=False,
                       kv_cache_memory=256 * 2**20)
    timer = ForwardTimer(engine.executor)
    short, long = prompts(engine)
    run_one(engine, timer, short, 8, "warmup")
    profiler = cProfile.Profile() if args.profile else None
    decode = []
    for i in range(args.repeats):
        if profiler and i == args.repeats - 1:
            profiler.enable()
        decode.append(run_one(engine, timer, short, args.max_tokens, f"d{i}"))
        if profiler and i == args.repeats - 1:
            profiler.disable()
    prefill = [run_one(engine, timer, long, 1, f"p{i}") for i in range(args.repeats)]
    result = {"dtype": engine.config.dtype, "quantization": engine.config.quantization,
              "threads": torch.get_num_threads(), "decode": best(decode), "prefill": best(prefill)}
    if args.use_async:
        result["async_decode_tok_s"] = max(run_async(engine, short, args.max_tokens)
                                           for _ in range(args.repeats))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        result["profile"] = out.getvalue()
    engine.shutdown()
    tokens = engine.tokenizer.encode(TEXT, add_special_tokens=False)
    result["logits"] = text_logits(engine.executor.model, tokens)
    result["text_tokens"] = tokens
    return result


def reference_logits(model: str, tokens: list[int]) -> torch.Tensor:
    from callm.model_executor.worker import load_model

    return text_logits(load_model(resolve_model(model), torch.float32), tokens)


def bench_llama_cpp(args, model: str, short_text: str, long_text: str) -> dict | None:
    try:
        import llama_cpp
    except ImportError:
        print("llama.cpp: not installed; to compare, install the optional peer (builds from "
              "source, ~5 min):\n  CMAKE_ARGS=\"-DGGML_NATIVE=ON\" pip install -c constraints.txt "
              "llama-cpp-python==0.3.36")
        return None
    path = str(resolve_model(model))
    llm = llama_cpp.Llama(model_path=path, n_threads=args.llama_threads,
                          n_threads_batch=args.llama_threads, n_ctx=2048, n_batch=1024,
                          verbose=False)
    short = llm.tokenize(short_text.encode(), add_bos=False, special=True)
    long = llm.tokenize(long_text.encode(), add_bos=False, special=True)

    def decode_run() -> float:
        llm.reset()
        llm.eval(short)
        token, times = None, []
        for _ in range(args.max_tokens):
            token = int(llm.scores[llm.n_tokens - 1].argmax())  # greedy, EOS allowed through
            llm.eval([token])
            times.append(time.perf_counter())
        return (len(times) - 1) / (times[-1] - times[0])

    def prefill_run() -> float:
        llm.reset()
        start = time.perf_counter()
        llm.eval(long)
        return time.perf_counter() - start

    decode_run()
    decode = max(decode_run() for _ in range(args.repeats))
    ttft = min(prefill_run() for _ in range(args.repeats))
    return {"version": llama_cpp.__version__, "threads": args.llama_threads,
            "decode_tok_s": decode, "ttft_s": ttft, "prefill_tok_s": len(long) / ttft,
            "prompt_tokens": len(long)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct")
    p.add_argument("--configs", default="auto/auto,bfloat16/none,float32/none,auto/int8,auto/int4",
                   help="callm rows, dtype/quantization each")
    p.add_argument("--num-threads", type=int, help="callm threads (default: every core)")
    p.add_argument("--llama-threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="also decode through AsyncLLMEngine (the server's streaming path)")
    p.add_argument("--no-llama", action="store_true")
    p.add_argument("--profile", action="store_true", help="cProfile the last decode run")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"CPU capability {cpu_capability()}, bf16 flags {sorted(cpu_flags()) or 'none'}, "
          f"torch {torch.__version__}")
    results = {}
    for model in args.models.split(","):
        results[model] = bench_model(args, model)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


def bench_model(args, model: str) -> dict:
    configs = [c.split("/") for c in args.configs.split(",")]
    rows = [bench_callm(args, model, d, q) for d, q in configs]
    tokens = rows[0]["text_tokens"]
    reference = reference_logits(model, tokens)
    ref_ppl = perplexity(reference, tokens)
    peer = None
    if not args.no_llama:
        tok = load_tokenizer(model)  # the same prompts, as text
        template = default_chat_template(tok, model)
        peer = bench_llama_cpp(args, model, render_chat(tok, SHORT, chat_template=template),
                               render_chat(tok, LONG, TOOLS, chat_template=template))
    print(f"\n== {model} ({resolve_model(model).name}) ==")
    print(f"{'engine':<28}{'thr':>4}{'decode tok/s':>13}{'step ms':>8}{'fwd ms':>7}"
          f"{'other':>6}{'TTFT ms':>8}{'prefill tok/s':>14}{'ppl %':>7}{'agree':>6}"
          + ("   vs llama.cpp: decode prefill TTFT" if peer else ""))
    for (requested_dtype, requested_q), r in zip(configs, rows):
        d, f = r["decode"], r["prefill"]
        name = f"callm {r['dtype']}/{r['quantization']}"
        if "auto" in (requested_dtype, requested_q):
            name += " (auto)"
        ppl = 100 * (perplexity(r["logits"], tokens) / ref_ppl - 1)
        agree = (r["logits"].argmax(-1) == reference.argmax(-1)).float().mean().item()
        line = (f"{name:<28}{r['threads']:>4}{d['decode_tok_s']:>13.1f}{d['step_ms']:>8.2f}"
                f"{d['forward_ms']:>7.2f}{d['overhead_ms']:>6.2f}{1e3 * f['ttft_s']:>8.1f}"
                f"{f['prefill_tok_s']:>14.1f}{ppl:>+7.2f}{agree:>6.2f}")
        if peer:
            line += (f"   {d['decode_tok_s'] / peer['decode_tok_s']:>17.2f}x"
                     f"{f['prefill_tok_s'] / peer['prefill_tok_s']:>7.2f}x"
                     f"{peer['ttft_s'] / f['ttft_s']:>5.2f}x")
        print(line)
        if "async_decode_tok_s" in r:
            print(f"{'  via AsyncLLMEngine':<32}{r['async_decode_tok_s']:>13.1f}")
        r.update(ppl_delta_pct=ppl, greedy_agreement=agree)
        del r["logits"], r["text_tokens"]
    if peer:
        print(f"{'llama.cpp ' + peer['version']:<28}{peer['threads']:>4}"
              f"{peer['decode_tok_s']:>13.1f}{'':>21}{1e3 * peer['ttft_s']:>8.1f}"
              f"{peer['prefill_tok_s']:>14.1f}   ({peer['prompt_tokens']} prompt tokens)")
    print(f"(prefill prompt: {rows[0]['prefill']['prompt_tokens']} tokens with {len(TOOLS)} "
          f"tools; decode: {args.max_tokens} tokens after a "
          f"{rows[0]['decode']['prompt_tokens']}-token prompt; best of {args.repeats}; "
          f"ppl %: perplexity change on a {len(tokens)}-token text against float32 unquantized "
          f"(ppl {ref_ppl:.2f}), agree: its greedy tokens matched)")
    for r in rows:
        if "profile" in r:
            print(f"\n--- cProfile, decode, {r['dtype']}/{r['quantization']} ---\n"
                  f"{r.pop('profile')}")
    return {"callm": rows, "llama.cpp": peer}


if __name__ == "__main__":
    main()
