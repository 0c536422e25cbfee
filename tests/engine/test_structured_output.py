"""Structured outputs: grammars from JSON Schemas, regexes, choices and tool-call formats, on
every backend (xgrammar, llguidance, outlines), in the engine.

Three tiers: grammar-level checks on the real SmolLM2 tokenizer (no model); engine invariants
on the tiny float32 model (free rows unchanged by constrained neighbours, preemption, clean
errors); and the embedded SmolLM2 — which never calls tools on its own — forced by
tool_choice required/named to call tools whose arguments must validate (jsonschema) against 22
varied schemas, plus response_format-style JSON and strict tools in auto mode.

outlines lacks, and is skipped or expected to fail for, exactly: context-free `grammar`
constraints, lazily triggered tool grammars (strict tools in auto mode), JSON-Schema number
bounds (minimum/maximum/exclusive*, see `OUTLINES_UNENFORCED`), and more than one call under
tool_choice required (outlines-core allows no token that runs past a point where the output
could end unless it ends at another one, so after a complete call only EOS is left).
"""

import functools
import json
import logging

import jiter
import jsonschema
import pytest
import torch

from callm.engine.sampling_params import SamplingParams, StructuredOutputsParams
from callm.engine.structured_output import StructuredOutputError, StructuredOutputManager
from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.model_files import load_tokenizer
from callm.tool_parsers import ToolParser, ToolParserManager
from callm.tool_parsers.grammar import plan_tool_choice
from structured_schemas import CASES, OUTLINES_UNENFORCED, parameters, tool, validation_error
from test_engine import make_engine
from test_engine import run as run_requests

BACKENDS = ["xgrammar", "llguidance", "outlines"]
LAZY_BACKENDS = ["xgrammar", "llguidance"]  # outlines has no lazily triggered grammars
EOS = (0, 2)  # SmolLM2: <|endoftext|>, <|im_end|>

WEATHER = tool("get_weather", "Weather in a city", {
    "type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": False})
CLOCK = tool("get_time", "The time", None)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def manager(tokenizer):
    return StructuredOutputManager(tokenizer, len(tokenizer), EOS)


def compile_(manager, backend, **constraint):
    return manager.compile(StructuredOutputsParams(backend=backend, **constraint))


def feed(manager, compiled, tokenizer, text: str):
    """A matcher fed `text`; returns (matcher, all tokens accepted, the output may end here:
    nothing but EOS is allowed, or EOS is among the allowed tokens)."""
    matcher = manager.new_matcher(compiled)
    tokens = tokenizer.encode(text, add_special_tokens=False)
    ok = all(matcher.accept_token(t) for t in tokens)
    logits = torch.zeros(1, manager.vocab.vocab_size)
    ended = manager.apply_bitmask(logits, [matcher]) == [0]
    return matcher, ok, ok and (ended or bool(torch.isfinite(logits[0, list(EOS)]).any()))


# --------------------------------------------------------------------------- params

def test_params_validation():
    assert StructuredOutputsParams(json='{"type": "object"}').json == {"type": "object"}
    assert StructuredOutputsParams(choice=("a", "b")).kind == "choice"
    assert StructuredOutputsParams(backend="outlines").kind is None
    with pytest.raises(ValueError, match="json and regex"):
        StructuredOutputsParams(json={}, regex="a")
    with pytest.raises(ValueError, match="backend"):
        StructuredOutputsParams(regex="a", backend="nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        StructuredOutputsParams(json="{oops")
    params = SamplingParams(structured_outputs={"regex": "[0-9]+"})
    assert params.structured_outputs.regex == "[0-9]+"


# --------------------------------------------------------------------------- grammars

def canonical(parser: str, calls: list[tuple[str, dict]]) -> str:
    """What each format's canonical (grammar-written) markup looks like, written by hand."""
    args = [(n, json.dumps(a)) for n, a in calls]
    if parser == "hermes":
        return "\n".join(f'<tool_call>\n{{"name": "{n}", "arguments": {a}}}\n</tool_call>'
                         for n, a in args)
    if parser == "mistral":
        return "[TOOL_CALLS][" + ", ".join(f'{{"name": "{n}", "arguments": {a}}}'
                                           for n, a in args) + "]"
    if parser == "llama3_json":
        return "; ".join(f'{{"name": "{n}", "parameters": {a}}}' for n, a in args)
    if parser == "functioncall":
        return "\n".join(f'<functioncall>{{"name": "{n}", "arguments": {a}}}' for n, a in args)
    raise KeyError(parser)


@pytest.fixture(scope="module")
def parsers():
    ToolParserManager.import_tool_parser("examples/tool_parser_plugin.py")
    return {name: ToolParserManager.get_tool_parser(name)
            for name in ("hermes", "mistral", "llama3_json", "functioncall")}


def chat_request(tools, **kwargs) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], tools=tools,
                                 **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("parser", ["hermes", "mistral", "llama3_json", "functioncall"])
def test_required_grammar_is_the_parsers_format(manager, tokenizer, parsers, parser, backend):
    """The grammar derived from a format accepts exactly its canonical markup with valid
    arguments, and the same parser reads what it accepts."""
    parser_cls = parsers[parser]
    request = chat_request([WEATHER, CLOCK], tool_choice="required")
    plan = plan_tool_choice(request, parser_cls)
    assert plan.parser_cls is parser_cls and plan.finish_reason == "tool_calls"
    compiled = manager.compile(StructuredOutputsParams(
        structural_tag=plan.structured_outputs.structural_tag, backend=backend))
    calls = [("get_weather", {"city": "Rome", "days": 3}), ("get_time", {})]
    if backend == "outlines":  # past a point where the output may end, outlines allows only
        calls = calls[:1]      # tokens that reach another such point: one call (see module)
    text = canonical(parser, calls)
    _, ok, may_end = feed(manager, compiled, tokenizer, text)
    assert ok and may_end, text
    info = parser_cls(tokenizer).extract_tool_calls(text, request)
    assert [(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls] == calls
    for bad in (canonical(parser, [("get_weather", {"city": "Oslo", "days": 3})]),  # enum
                canonical(parser, [("get_weather", {"city": "Rome", "days": 9})]),  # bound
                canonical(parser, [("get_weather", {"city": "Rome"})]),  # required key
                canonical(parser, [("launch_rocket", {})]),  # unknown tool
                canonical(parser, [("get_weather", {"city": "Rome", "days": 3})]).replace(
                    ": ", ":  ", 1)):  # free whitespace
        if backend == "outlines" and '"days": 9' in bad:
            continue  # outlines does not enforce number bounds
        _, ok, may_end = feed(manager, compiled, tokenizer, bad)
        assert not (ok and may_end), bad


@pytest.mark.parametrize("backend", BACKENDS)
def test_named_and_single_call_grammars(manager, tokenizer, parsers, backend):
    hermes = parsers["hermes"]
    named = plan_tool_choice(chat_request([WEATHER, CLOCK], tool_choice={
        "type": "function", "function": {"name": "get_time"}}), hermes)
    assert named.finish_reason == "stop" and named.named == "get_time"
    single = plan_tool_choice(chat_request([WEATHER, CLOCK], tool_choice="required",
                                           parallel_tool_calls=False), hermes)
    one_call = canonical("hermes", [("get_time", {})])
    two_calls = canonical("hermes", [("get_time", {}), ("get_time", {})])
    for plan, accepted, rejected in ((named, [one_call], [two_calls, canonical(
            "hermes", [("get_weather", {"city": "Rome", "days": 1})])]),
            (single, [one_call], [two_calls])):
        compiled = compile_(manager, backend,
                            structural_tag=plan.structured_outputs.structural_tag)
        for text in accepted:
            assert feed(manager, compiled, tokenizer, text)[1:] == (True, True)
        for text in rejected:
            assert feed(manager, compiled, tokenizer, text)[1:] != (True, True), text


@pytest.mark.parametrize("backend", LAZY_BACKENDS)
@pytest.mark.parametrize("parser", ["hermes", "mistral", "llama3_json"])
def test_strict_auto_grammar_is_lazy(manager, tokenizer, parsers, parser, backend):
    """Free text until the format's marker; then the call must be valid; then free text."""
    strict = tool("get_weather", "Weather", parameters(WEATHER), strict=True)
    request = chat_request([strict, CLOCK])  # auto
    plan = plan_tool_choice(request, parsers[parser])
    compiled = compile_(manager, backend, structural_tag=plan.structured_outputs.structural_tag)
    marker = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]",
              "llama3_json": "<|python_tag|>"}[parser]
    call = canonical(parser, [("get_weather", {"city": "Paris", "days": 2})])
    if parser == "llama3_json":
        call = marker + call
    assert feed(manager, compiled, tokenizer, "Sure, here is some text {with} [brackets].")[1]
    _, ok, may_end = feed(manager, compiled, tokenizer, "Let me check. " + call)
    assert ok and may_end  # more text or EOS may follow
    bad = call.replace('"days": 2', '"days": 12')
    assert not feed(manager, compiled, tokenizer, "Let me check. " + bad)[1]
    # a non-strict tool's arguments are any JSON object
    free = canonical(parser, [("get_time", {"anything": [1, {"goes": None}]})])
    free = marker + free if parser == "llama3_json" else free
    assert feed(manager, compiled, tokenizer, free)[1]


def test_strict_tools_in_auto_mode_only(parsers):
    hermes = parsers["hermes"]
    assert plan_tool_choice(chat_request([WEATHER]), hermes).structured_outputs is None
    strict = tool("get_weather", "Weather", parameters(WEATHER), strict=True)
    plan = plan_tool_choice(chat_request([strict]), hermes)
    assert plan.structured_outputs.structural_tag["format"]["type"] == "triggered_tags"
    assert plan_tool_choice(chat_request([strict]), hermes, parse_auto=False).parser_cls is None
    assert plan_tool_choice(chat_request([strict], tool_choice="none"), hermes).parser_cls is None


class _PluginParser(ToolParser):  # hand-written, no declarative format
    pass


@pytest.mark.parametrize("parser_name", ["plugin", None])
def test_only_parsers_without_a_format_fall_back_to_hermes(parser_name, caplog):
    """No parser, or a hand-written one that declares no format: required/named use the Hermes
    encoding, read by the Hermes parser. (A declared format is never replaced: see
    tests/tool_parsers/test_grammar_roundtrip.py.)"""
    parser_cls = {"plugin": _PluginParser, None: None}[parser_name]
    hermes = ToolParserManager.get_tool_parser("hermes")
    with caplog.at_level(logging.WARNING, logger="callm.tool_parsers.grammar"):
        plan = plan_tool_choice(chat_request([WEATHER], tool_choice="required"), parser_cls)
    assert plan.parser_cls is hermes
    begins = plan.structured_outputs.structural_tag["format"]["tags"][0]["begin"]
    assert begins.startswith("<tool_call>\n")
    if parser_name:
        assert "Hermes" in caplog.text
    # strict tools in auto mode: nothing to enforce them with, the parser still reads calls
    strict = tool("get_weather", "Weather", parameters(WEATHER), strict=True)
    if parser_cls is not None:
        auto = plan_tool_choice(chat_request([strict]), parser_cls)
        assert auto.parser_cls is parser_cls and auto.structured_outputs is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_regex_choice(manager, tokenizer, backend):
    schema = {"type": "object", "properties": {"a": {"type": "integer"},
                                               "b": {"type": "array", "items": {"type": "string"}}},
              "required": ["a"]}
    compiled = compile_(manager, backend, json=schema)
    assert feed(manager, compiled, tokenizer, '{"a": 1, "b": ["x", "y"]}')[1:] == (True, True)
    assert not feed(manager, compiled, tokenizer, '{ "a": 1}')[1]  # whitespace is fixed
    assert not feed(manager, compiled, tokenizer, '{"b": []}')[1:] == (True, True)
    obj = compile_(manager, backend, json_object=True)
    assert feed(manager, obj, tokenizer, '{"any": {"thing": [1, null]}}')[1:] == (True, True)
    assert not feed(manager, obj, tokenizer, '[1, 2]')[1]
    regex = compile_(manager, backend, regex=r"[0-9]{3}-[0-9]{4}")
    assert feed(manager, regex, tokenizer, "555-1234")[1:] == (True, True)
    assert not feed(manager, regex, tokenizer, "555-12a")[1]
    choice = compile_(manager, backend, choice=["yes", "no", 'say "hi"\n'])
    assert feed(manager, choice, tokenizer, 'say "hi"\n')[1:] == (True, True)
    assert not feed(manager, choice, tokenizer, "maybe")[1]


@pytest.mark.parametrize("backend", ["xgrammar", "llguidance"])
@pytest.mark.parametrize("grammar", ['start: "yes" | "no"', 'root ::= "yes" | "no"'])
def test_grammar_lark_or_ebnf(manager, tokenizer, backend, grammar):
    compiled = compile_(manager, backend, grammar=grammar)
    assert feed(manager, compiled, tokenizer, "no")[1:] == (True, True)
    assert not feed(manager, compiled, tokenizer, "nope")[1]


def test_outlines_missing_features_are_clear_errors(manager, parsers):
    """What outlines lacks, listed: context-free grammars, lazily triggered tool grammars
    (strict tools in auto mode) — both clear errors — and number bounds, not enforced."""
    with pytest.raises(StructuredOutputError, match="outlines.*grammar"):
        compile_(manager, "outlines", grammar='start: "yes"')
    strict = tool("get_weather", "Weather", parameters(WEATHER), strict=True)
    plan = plan_tool_choice(chat_request([strict]), parsers["hermes"])
    with pytest.raises(StructuredOutputError, match="outlines cannot express lazily triggered"):
        compile_(manager, "outlines", structural_tag=plan.structured_outputs.structural_tag)
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}},
              "required": ["n"]}
    tok = manager.vocab.tokenizer
    assert feed(manager, compile_(manager, "outlines", json=schema), tok, '{"n": 9}')[1]
    assert not feed(manager, compile_(manager, "xgrammar", json=schema), tok, '{"n": 9}')[1]
    assert "set_alarm" in OUTLINES_UNENFORCED


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constraint, mentions", [
    ({"json": {"type": "object", "properties": {"a": {"type": "strin"}}}}, "strin"),
    ({"json": {"$ref": "#/$defs/missing"}}, "$defs"),
    ({"regex": "(unclosed"}, "regex"),
    ({"grammar": "start: undefined_rule"}, "undefined_rule"),
    ({"structural_tag": {"type": "structural_tag", "format": {"type": "no_such_node"}}},
     "no_such_node"),
])
def test_compile_errors_name_the_problem(manager, backend, constraint, mentions):
    if backend == "outlines" and "grammar" in constraint:
        mentions = "grammar"
    with pytest.raises(StructuredOutputError) as e:
        compile_(manager, backend, **constraint)
    assert isinstance(e.value, ValueError)
    assert mentions in str(e.value) or mentions.lower() in str(e.value).lower(), str(e.value)
    assert "Traceback" not in str(e.value) and "/project/cpp" not in str(e.value)


def test_cache_rollback_and_padding(tokenizer):
    """Compiled grammars are cached per (backend, constraint); matchers roll back; a model
    vocabulary wider than the tokenizer's is masked past the tokenizer; free rows and
    all-allowed rows are untouched."""
    wide = len(tokenizer) + 61
    manager = StructuredOutputManager(tokenizer, wide, EOS, cache_size=2)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    first = compile_(manager, "xgrammar", json=schema)
    assert compile_(manager, "xgrammar", json=schema) is first
    assert (manager.cache_hits, manager.cache_misses) == (1, 1)
    compile_(manager, "xgrammar", regex="a")
    compile_(manager, "xgrammar", regex="b")  # evicts the schema (LRU of 2)
    assert compile_(manager, "xgrammar", json=schema) is not first

    for backend in BACKENDS:
        compiled = compile_(manager, backend, json=schema)
        matcher = manager.new_matcher(compiled)
        logits = torch.randn(3, wide)
        before = logits.clone()
        assert manager.apply_bitmask(logits, [None, matcher, None]) == []
        assert torch.equal(logits[0], before[0]) and torch.equal(logits[2], before[2])
        allowed = torch.isfinite(logits[1]).nonzero().squeeze(1).tolist()
        assert allowed == [tokenizer.convert_tokens_to_ids("{")] or \
            all(tokenizer.decode([t]).startswith("{") for t in allowed), backend
        assert torch.isinf(logits[1, len(tokenizer):]).all()  # past the tokenizer: never
        reference = logits[1].clone()
        tokens = tokenizer.encode('{"a": 12', add_special_tokens=False)
        assert all(matcher.accept_token(t) for t in tokens)
        matcher.rollback(len(tokens))
        again = before[1:2].clone()
        manager.apply_bitmask(again, [matcher])
        assert torch.equal(again[0], reference), backend


# --------------------------------------------------------------------------- engine, tiny model

def run(engine, prompts, params):
    """First output of each request (the engine tests' runner checks all blocks come back)."""
    return [out.outputs[0] for out in run_requests(engine, prompts, params)]


FREE = ["The quick brown fox", "1, 2, 3,", "Une phrase en français."]
GREEDY = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return make_engine(tiny_llama_dir)


def tool_params(parser_cls, tools, backend, max_tokens=80, **request):
    plan = plan_tool_choice(chat_request(tools, **request), parser_cls)
    return SamplingParams(temperature=0, max_tokens=max_tokens, structured_outputs=(
        StructuredOutputsParams(structural_tag=plan.structured_outputs.structural_tag,
                                backend=backend)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_free_requests_unchanged_by_constrained_neighbours(tiny, parsers, backend):
    alone = [o.token_ids for o in run(tiny, FREE, GREEDY)]
    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
                                               "sunny": {"type": "boolean"}},
              "required": ["city", "sunny"]}
    constrained = [
        SamplingParams(temperature=0, max_tokens=24, structured_outputs=StructuredOutputsParams(
            json=schema, backend=backend)),
        tool_params(parsers["hermes"], [WEATHER, CLOCK], backend, tool_choice="required"),
        SamplingParams(temperature=0.8, seed=5, max_tokens=8, structured_outputs=(
            StructuredOutputsParams(choice=["alpha", "beta"], backend=backend)))]
    prompts = [FREE[0], "Weather?", FREE[1], "Tools!", FREE[2], "Pick one"]
    params = [GREEDY, constrained[0], GREEDY, constrained[1], GREEDY, constrained[2]]
    outs = run(tiny, prompts, params)
    assert [outs[i].token_ids for i in (0, 2, 4)] == alone
    jsonschema.validate(json.loads(outs[1].text), schema)
    assert outs[1].finish_reason == "stop"
    assert outs[5].text in ("alpha", "beta") and outs[5].finish_reason == "stop"


@pytest.mark.parametrize("parser", ["hermes", "mistral", "llama3_json"])
def test_random_model_forced_into_each_format(tiny, parsers, parser):
    """Even a random model writes parseable, schema-valid calls in each format."""
    parser_cls = parsers[parser]
    request = chat_request([WEATHER, CLOCK], tool_choice="required", parallel_tool_calls=False)
    params = tool_params(parser_cls, [WEATHER, CLOCK], "xgrammar", tool_choice="required",
                         parallel_tool_calls=False)
    outs = run(tiny, FREE, params)
    for out in outs:
        assert out.finish_reason == "stop", out.text
        info = parser_cls(tiny.tokenizer).extract_tool_calls(out.text, request)
        assert len(info.tool_calls) == 1 and info.content is None, out.text
        call = info.tool_calls[0].function
        spec = WEATHER if call.name == "get_weather" else CLOCK
        assert validation_error(spec, call.arguments) is None


def test_grammar_survives_preemption(tiny_llama_dir, parsers):
    """A KV cache too small for all requests forces preempt-and-recompute: a grammar's state
    is never rolled back (the tokens are kept), and the outputs match an unpressured run."""
    params = tool_params(parsers["hermes"], [WEATHER, CLOCK], "xgrammar", max_tokens=60,
                         tool_choice="required")
    prompts = ["You are a helpful assistant with tools. " * 4 + p for p in FREE]
    roomy = run(make_engine(tiny_llama_dir), prompts, params)
    block_bytes = 2 * 2 * 4 * 2 * 16 * 4
    tight = make_engine(tiny_llama_dir, kv_cache_memory=30 * block_bytes, max_model_len=128)
    pressed = run(tight, prompts, params)
    assert tight.scheduler.num_preemptions > 0
    assert [o.token_ids for o in pressed] == [o.token_ids for o in roomy]


def test_bad_constraint_is_a_value_error_and_leaves_nothing_behind(tiny):
    bad = SamplingParams(max_tokens=4, structured_outputs=StructuredOutputsParams(
        json={"type": "object", "properties": {"a": {"type": "strin"}}}))
    with pytest.raises(ValueError, match="strin"):
        tiny.add_request("bad", FREE[0], bad)
    assert not tiny.has_unfinished_requests() and "bad" not in tiny.groups


# --------------------------------------------------------------------------- SmolLM2
# Each check runs every backend in one batch (per-request backends), so the three backends
# share decode steps; the tests then look at one backend's results each.

@pytest.fixture(scope="module")
def smollm():
    from callm import LLM

    return LLM(max_model_len=1024, kv_cache_memory=192 * 2**20)


def backend_params(backend: str, max_tokens: int = 120, **kwargs) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, structured_outputs=(
        StructuredOutputsParams(backend=backend, **kwargs)))


def per_backend(outputs: list, backends=BACKENDS) -> dict[str, list]:
    size = len(outputs) // len(backends)
    return {b: outputs[i * size:(i + 1) * size] for i, b in enumerate(backends)}


@pytest.fixture(scope="module")
def named_sweep(smollm):
    """Each of the 22 tools named in its own conversation, for every backend: one batch."""
    assert len(CASES) >= 20
    cases = CASES * len(BACKENDS)
    outs = smollm.chat([[{"role": "user", "content": q}] for _, q in cases],
                       [backend_params(b) for b in BACKENDS for _ in CASES],
                       tools=[[t] for t, _ in cases],
                       tool_choice=[{"type": "function",
                                     "function": {"name": t["function"]["name"]}}
                                    for t, _ in cases], use_tqdm=False)
    return per_backend(outs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_named_tool_choice_over_22_schemas(named_sweep, backend):
    problems = []
    for (spec, _), out in zip(CASES, named_sweep[backend]):
        name, completion = spec["function"]["name"], out.outputs[0]
        calls = completion.tool_calls or []
        if len(calls) != 1 or calls[0].function.name != name:
            problems.append(f"{name}: {completion.text!r}")
            continue
        error = validation_error(spec, calls[0].function.arguments)
        if error and not (backend == "outlines" and name in OUTLINES_UNENFORCED):
            problems.append(f"{name}: {error}")
        if completion.finish_reason != "stop":
            problems.append(f"{name}: finish_reason {completion.finish_reason}")
    assert not problems, "\n".join(problems)


REQUIRED_TOOLS = [t for t, _ in CASES[:6]]


@pytest.fixture(scope="module")
def required_runs(smollm):
    convs = [[{"role": "user", "content": q}] for _, q in CASES[:6]]
    single = smollm.chat(convs * len(BACKENDS),
                         [backend_params(b) for b in BACKENDS for _ in convs],
                         tools=REQUIRED_TOOLS, tool_choice="required",
                         parallel_tool_calls=False, use_tqdm=False)
    parallel = smollm.chat(convs[:2] * len(BACKENDS),
                           [backend_params(b, max_tokens=200) for b in BACKENDS for _ in range(2)],
                           tools=REQUIRED_TOOLS, tool_choice="required", use_tqdm=False)
    return per_backend(single), per_backend(parallel)


@pytest.mark.parametrize("backend", BACKENDS)
def test_required_tool_choice(required_runs, backend):
    single, parallel = (runs[backend] for runs in required_runs)
    by_name = {t["function"]["name"]: t for t in REQUIRED_TOOLS}

    def check(call):
        error = validation_error(by_name[call.function.name], call.function.arguments)
        assert error is None or (backend == "outlines" and call.function.name in
                                 OUTLINES_UNENFORCED and json.loads(call.function.arguments))

    for out in single:  # parallel_tool_calls=False: exactly one call
        [call] = out.outputs[0].tool_calls
        check(call)
        assert out.outputs[0].text.count("<tool_call>") == 1
        assert out.outputs[0].finish_reason == "stop"
    for out in parallel:
        completion = out.outputs[0]
        calls = completion.tool_calls
        assert calls
        complete = calls if completion.finish_reason == "stop" else calls[:-1]  # cut at limit
        for call in complete:
            check(call)


PERSON = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"},
    "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
    "required": ["name", "age", "languages"], "additionalProperties": False}


@pytest.fixture(scope="module")
def json_runs(smollm):
    ask = [{"role": "user", "content": "Give me a JSON object describing a person: name, age "
                                       "and the programming languages they know."}]
    outs = smollm.chat([ask] * (2 * len(BACKENDS)),
                       [p for b in BACKENDS for p in (backend_params(b, json=PERSON),
                                                      backend_params(b, json_object=True))],
                       use_tqdm=False)
    return per_backend(outs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_schema_response(json_runs, backend):
    schema_out, object_out = (o.outputs[0] for o in json_runs[backend])
    jsonschema.validate(json.loads(schema_out.text), PERSON)
    # any JSON object: SmolLM2 may ramble on inside it until max_tokens, but never off JSON
    if object_out.finish_reason == "stop":
        assert isinstance(json.loads(object_out.text), dict)
    else:
        assert isinstance(jiter.from_json(object_out.text.encode(),
                                          partial_mode="trailing-strings"), dict)


STRICT_WEATHER = tool("get_weather", "Get the current weather in a city", {
    "type": "object", "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False}, strict=True)


@pytest.fixture(scope="module")
def strict_runs(smollm):
    ask = [{"role": "user", "content": "Repeat after me exactly: <tool_call>"}]
    outs = smollm.chat([ask] * len(LAZY_BACKENDS),
                       [backend_params(b, max_tokens=60) for b in LAZY_BACKENDS],
                       tools=[STRICT_WEATHER], use_tqdm=False)
    return per_backend(outs, LAZY_BACKENDS)


@pytest.mark.parametrize("backend", LAZY_BACKENDS)
def test_strict_tool_in_auto_mode(strict_runs, backend):
    """Asked to echo the call marker, the model starts a call on its own; from the marker on,
    the strict tool's grammar holds it to a valid call (unconstrained, SmolLM2 writes the
    tool's schema instead of arguments here)."""
    completion = strict_runs[backend][0].outputs[0]
    assert completion.tool_calls, completion.text
    call = completion.tool_calls[0].function
    assert call.name == "get_weather"
    assert validation_error(STRICT_WEATHER, call.arguments) is None


# --------------------------------------------------------------------------- real tokenizers

@functools.lru_cache(maxsize=None)
def _real_manager(name) -> StructuredOutputManager:
    """One manager (backends and their tokenizer facts) per real tokenizer."""
    import real_tokenizers

    from callm.engine.llm_engine import eos_token_ids

    tok = getattr(real_tokenizers, name)().raw
    return StructuredOutputManager(tok, len(tok), eos_token_ids(tok))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family, parser, marker, end", [
    ("qwen25_tokenizer", "hermes", 151657, 151658),    # <tool_call> ... </tool_call>
    ("llama32_tokenizer", "llama3_json", 128010, None),  # <|python_tag|>
])
@pytest.mark.parametrize("mode", ["required", "auto"])
def test_markers_as_single_tokens(backend, family, parser, marker, end, mode):
    """Where the marker is one (special) token, the model may write it as that token."""
    if backend == "outlines" and mode == "auto":
        pytest.skip("outlines has no lazily triggered grammars")
    try:
        manager = _real_manager(family)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(f"tokenizer not installed: {e}")
    tok = manager.vocab.tokenizer
    strict = tool("get_weather", "Weather", {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]}, strict=True)
    plan = plan_tool_choice(chat_request([strict], tool_choice=mode),
                            ToolParserManager.get_tool_parser(parser))
    compiled = compile_(manager, backend, structural_tag=plan.structured_outputs.structural_tag)
    args_key = "arguments" if parser == "hermes" else "parameters"
    body = f'{{"name": "get_weather", "{args_key}": {{"city": "Paris"}}}}'
    body = f"\n{body}\n" if parser == "hermes" else body
    ids = tok.encode("Let me check. ", add_special_tokens=False) if mode == "auto" else []
    ids += [marker] + tok.encode(body, add_special_tokens=False) + ([end] if end else [])
    matcher = manager.new_matcher(compiled)
    assert all(matcher.accept_token(t) for t in ids)
