"""Micro-benchmark of the built-in tool parsers: non-streaming and streaming cost per output.

For each format, outputs with 1, 4 and 16 realistic calls are checked once (the parser must
return exactly those calls), then timed with time.perf_counter (warm-up, then the minimum of
several samples). Streaming runs feed deltas of 1 char, 3 chars, or the whole output to a new
parser instance and include finish_streaming. Baseline for scale: json.loads of the arguments.

    python benchmarks/bench_tool_parsers.py [--quick] [--formats hermes,mistral-v11]
"""

import argparse
import gc
import json
import sys
import time

from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.tool_parsers import ToolParserManager

SENTENCE = "Let me look that up for you."
CALL_COUNTS = (1, 4, 16)
# Four kinds of call cycled through; each has ~100-150 chars of JSON arguments.
CALLS = [
    ("get_weather", {"location": {"city": "San Francisco", "country": "US"}, "unit": "celsius",
                     "days": 3, "include": ["hourly forecast", "air quality"]}),
    ("search_docs", {"query": "refund policy for annual plans", "filters": {
        "lang": ["en", "de"], "year": {"gte": 2023}}, "limit": 10}),
    ("book_flight", {"origin": "New York JFK", "destination": "London Heathrow",
                     "passengers": {"adults": 2, "children": 1}, "cabin": "premium economy"}),
    ("create_event", {"title": "Quarterly planning", "start": "2025-04-02T15:00",
                      "attendees": ["ana@example.com", "li@example.com"], "duration_min": 45}),
]
TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
         for name, _ in CALLS]


def make_calls(n):
    calls = []
    for i in range(n):
        name, args = CALLS[i % len(CALLS)]
        calls.append((name, {**args, "seq": 1000 + i}))  # vary the calls a little
    return calls


def pythonic_call(name, args):
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"


def render(fmt, calls):
    """The model output for these calls in format `fmt` (a key of FORMATS)."""
    if fmt == "hermes":
        body = "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>"
                         for n, a in calls)
        return SENTENCE + "\n" + body
    if fmt == "mistral":
        return SENTENCE + "[TOOL_CALLS]" + json.dumps([{"name": n, "arguments": a}
                                                       for n, a in calls])
    if fmt == "mistral-v11":
        return SENTENCE + "".join(f"[TOOL_CALLS]{n}[ARGS]{json.dumps(a)}" for n, a in calls)
    if fmt == "llama3_json":
        return SENTENCE + "<|python_tag|>" + "; ".join(
            json.dumps({"name": n, "parameters": a}) for n, a in calls)
    if fmt == "pythonic":  # the call list must start the output: no content sentence
        return "[" + ", ".join(pythonic_call(n, a) for n, a in calls) + "]"
    if fmt == "llama4_pythonic":
        return (SENTENCE + "<|python_start|>[" + ", ".join(pythonic_call(n, a) for n, a in calls)
                + "]<|python_end|>")
    raise ValueError(fmt)


# Reported name -> registered parser name.
FORMATS = {"hermes": "hermes", "mistral": "mistral", "mistral-v11": "mistral",
           "llama3_json": "llama3_json", "pythonic": "pythonic",
           "llama4_pythonic": "llama4_pythonic"}


def chunks(text, size):
    """(previous_text, current_text, delta_text) per delta, built outside the timed region."""
    return [(text[:i], text[:i + size], text[i:i + size]) for i in range(0, len(text), size)]


def stream(parser_cls, steps, req):
    p = parser_cls(None)
    out = [p.extract_tool_calls_streaming(prev, cur, d, [], [], [], req) for prev, cur, d in steps]
    out.append(p.finish_streaming(req))
    return out


def check(fmt, parser_cls, output, calls, req):
    """Fail loudly unless both modes give exactly these calls, names and arguments."""
    info = parser_cls(None).extract_tool_calls(output, req)
    got = [(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls]
    if got != calls:
        sys.exit(f"{fmt} with {len(calls)} calls: non-streaming gave {[g[0] for g in got]}")
    names, args = {}, {}
    for delta in stream(parser_cls, chunks(output, 3), req):
        for tc in (delta.tool_calls if delta else None) or []:
            if tc.function and tc.function.name:
                names[tc.index] = tc.function.name
            if tc.function and tc.function.arguments:
                args[tc.index] = args.get(tc.index, "") + tc.function.arguments
    got = [(names.get(i), json.loads(args.get(i, "null"))) for i in range(len(names))]
    if got != calls:
        sys.exit(f"{fmt} with {len(calls)} calls: streaming gave {[g[0] for g in got]}")


def timeit(fn, target_s, repeats):
    """µs per call of fn: minimum over `repeats` samples, each looping enough times to last
    about target_s."""
    fn()  # warm-up
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    number = max(1, int(target_s / max(once, 1e-9)))
    samples = []
    gc.disable()  # as the timeit module does: no collector pauses inside a sample
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number)
    finally:
        gc.enable()
    return min(samples) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset")
    opts = ap.parse_args()
    formats = [f.strip() for f in opts.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        sys.exit(f"unknown formats {unknown}; choose from {', '.join(FORMATS)}")
    target_s, repeats = (0.005, 5) if opts.quick else (0.025, 9)
    req = ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], tools=TOOLS)

    cols = ["non-stream", "stream@1", "stream@3", "stream@whole"]
    results, t0 = {}, time.perf_counter()
    header = (f"{'format':<16}{'calls':>5}{'chars':>7}" + "".join(f"{c + ' µs':>16}" for c in cols)
              + f"{'json.loads µs':>15}{'parse/json':>11}")
    print(header + "\n" + "-" * len(header))
    for fmt in formats:
        parser_cls = ToolParserManager.get_tool_parser(FORMATS[fmt])
        for n in CALL_COUNTS:
            calls = make_calls(n)
            output = render(fmt, calls)
            check(fmt, parser_cls, output, calls, req)
            arg_strings = [json.dumps(a) for _, a in calls]
            steps = {size: chunks(output, size) for size in (1, 3, len(output))}
            row = [timeit(lambda: parser_cls(None).extract_tool_calls(output, req),
                          target_s, repeats)]
            for size in (1, 3, len(output)):
                s = steps[size]
                row.append(timeit(lambda: stream(parser_cls, s, req), target_s, repeats))
            base = timeit(lambda: [json.loads(a) for a in arg_strings], target_s, repeats)
            results[fmt, n] = (len(output), row)
            print(f"{fmt:<16}{n:>5}{len(output):>7}" + "".join(f"{v:>16.1f}" for v in row)
                  + f"{base:>15.1f}{row[0] / base:>10.1f}x", flush=True)

    lo, hi = CALL_COUNTS[0], CALL_COUNTS[-1]
    print(f"\nLinearity: (µs per call at {hi} calls) / (µs per call at {lo} call); ~1 = linear, "
          "<1 = fixed per-output overhead amortised.\nµs per output char at "
          f"{hi} calls in brackets.")
    print(f"{'format':<16}" + "".join(f"{c:>22}" for c in cols))
    for fmt in formats:
        (_, small), (chars, big) = results[fmt, lo], results[fmt, hi]
        cells = [f"{(b / hi) / (s / lo):.2f} ({b / chars:.3f})" for s, b in zip(small, big)]
        print(f"{fmt:<16}" + "".join(f"{c:>22}" for c in cells))
    print(f"\n{'quick' if opts.quick else 'default'} run, min of {repeats} samples "
          f"(each ≥{target_s * 1e3:.0f} ms), {time.perf_counter() - t0:.1f} s total")


if __name__ == "__main__":
    main()
