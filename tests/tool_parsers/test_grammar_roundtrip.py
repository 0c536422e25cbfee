"""Every built-in tool-call format writes its OWN markup under tool_choice required / named
(and strict tools): the grammar derived from the format accepts the format's canonical
markup (`formats.write_calls`), rejects other tools and invalid arguments, and the format's
parser reads back what the grammar lets a model write.

Two tiers: per format and backend, canonical text fed to the compiled grammar (SmolLM2's
tokenizer, no model); and a tiny random-weight model forced by each format's grammar, required
and named, whose outputs the parser must read back as calls valid against the tools' schemas.
xgrammar writes every format; llguidance and outlines every one whose markup the grammar also
builds from plain nodes (all but MiniMax M3's nested tags), outlines one call at most.
"""

import json
import re

import jsonschema
import pytest

from callm.engine.llm_engine import LLMEngine
from callm.engine.sampling_params import SamplingParams, StructuredOutputsParams
from callm.engine.structured_output import StructuredOutputError, StructuredOutputManager
from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.model_files import load_tokenizer
from callm.tool_parsers import ToolParser, ToolParserManager
from callm.tool_parsers.formats import HarmonyMessage, PythonicCall, write_calls
from callm.tool_parsers.grammar import (ToolChoiceUnsupported, UnsupportedToolFormat,
                                        plan_tool_choice)

BUILTIN = {}  # one registered name per parser class
for _name in ToolParserManager.list_registered():
    BUILTIN.setdefault(ToolParserManager.get_tool_parser(_name), _name)
NAMES = sorted(BUILTIN.values())
EOS = (0, 2)  # SmolLM2: <|endoftext|>, <|im_end|>
# nested tags: xgrammar's minimax_m3_xml style only
XGRAMMAR_ONLY = {BUILTIN[ToolParserManager.get_tool_parser("minimax_m3")]}


def tool(name: str, parameters: dict | None) -> dict:
    function = {"name": name, "description": name.replace("_", " ")}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


# Small schemas, every string bounded (a random model otherwise writes until max_tokens).
WEATHER = tool("get_weather", {
    "type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city"], "additionalProperties": False})
CLOCK = tool("get_time", None)
ALARM = tool("set_alarm", {
    "type": "object", "properties": {
        "at": {"type": "object", "properties": {
            "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            "minute": {"type": "integer", "minimum": 0, "maximum": 59}},
            "required": ["hour", "minute"], "additionalProperties": False},
        "days": {"type": "array", "items": {"type": "string", "enum": ["mon", "tue"]},
                 "maxItems": 2},
        "loud": {"type": "boolean"},
        "label": {"type": "string", "enum": ["work", "gym"]}},
    "required": ["at", "label"], "additionalProperties": False})
TOOLS = [WEATHER, CLOCK, ALARM]
# MiniMax M3's nested tags hold no string bounds: its tools bound strings by enums instead.
M3_TOOLS = [tool("get_weather", {**WEATHER["function"]["parameters"], "properties": {
    **WEATHER["function"]["parameters"]["properties"],
    "city": {"type": "string", "enum": ["Rome", "Paris"]}}}), CLOCK, ALARM]
SCHEMAS = {t["function"]["name"]: t["function"].get("parameters") or
           {"type": "object", "properties": {}, "additionalProperties": False} for t in TOOLS}
CALLS = [("get_weather", {"city": "Rome", "days": 3}), ("get_time", {}),
         ("set_alarm", {"at": {"hour": 7, "minute": 30}, "days": ["mon"], "loud": True,
                        "label": "gym"})]


def parser(name: str):
    return ToolParserManager.get_tool_parser(name)


def chat_request(tools=TOOLS, **kwargs) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], tools=tools,
                                 **kwargs)


def tools_for(name: str) -> list[dict]:
    return M3_TOOLS if name in XGRAMMAR_ONLY else TOOLS


def named(function: str) -> dict:
    return {"type": "function", "function": {"name": function}}


def canonical(name: str, calls) -> str:
    """The format's canonical markup (`write_calls`); pythonic calls with JSON-quoted strings,
    as Llama and LFM2 write them (`write_calls` uses Python's repr)."""
    fmt = parser(name).formats[0]
    if isinstance(fmt.encoding, PythonicCall):
        def value(v):
            return {True: "True", False: "False"}[v] if isinstance(v, bool) else json.dumps(v)
        bodies = [f"{f}(" + ", ".join(f"{k}={value(v)}" for k, v in args.items()) + ")"
                  for f, args in calls]
        body = fmt.call_joiner.join(bodies)
        body = f"[{body}]" if fmt.list_wrapped else body
        return fmt.region_start + body + fmt.region_end
    text = write_calls(fmt, calls)
    if getattr(fmt.encoding, "grammar_style", "") == "deepseek_xml":
        # DeepSeek writes values without the newlines `write_calls` puts around every value
        text = re.sub(r'(string="(?:true|false)">)\n', r"\1", text)
        text = re.sub(r"\n(</｜DSML｜parameter>)", r"\1", text)
    return text


def read_back(name: str, text: str, request, tokenizer) -> list[tuple[str, dict]]:
    info = parser(name)(tokenizer).extract_tool_calls(text, request)
    return [(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def manager(tokenizer):
    return StructuredOutputManager(tokenizer, len(tokenizer), EOS)


def accepts(manager, tokenizer, grammar: dict, backend: str, text: str) -> bool:
    """The grammar takes `text` token by token and may end right after it."""
    compiled = manager.compile(StructuredOutputsParams(structural_tag=grammar, backend=backend))
    matcher = manager.new_matcher(compiled)
    if not all(matcher.accept_token(t) for t in tokenizer.encode(text, add_special_tokens=False)):
        return False
    import torch

    logits = torch.zeros(1, manager.vocab.vocab_size)
    ended = manager.apply_bitmask(logits, [matcher]) == [0]
    return ended or bool(torch.isfinite(logits[0, list(EOS)]).any())


# --------------------------------------------------------------------------- grammar tier

@pytest.mark.parametrize("backend", ["xgrammar", "llguidance", "outlines"])
@pytest.mark.parametrize("name", NAMES)
def test_grammar_writes_the_formats_own_markup(manager, tokenizer, name, backend):
    """required: the canonical markup of several calls is accepted and read back as written;
    named: one call of that function only; invalid arguments and other tools never."""
    request = chat_request(tools_for(name), tool_choice="required")
    plan = plan_tool_choice(request, parser(name))
    assert plan.parser_cls is parser(name)  # never another format's parser
    grammar = plan.structured_outputs.structural_tag
    calls = CALLS if backend != "outlines" else CALLS[:1]  # outlines: one call (see module)
    text = canonical(name, calls)
    assert read_back(name, text, request, tokenizer) == calls, text
    if backend != "xgrammar" and name in XGRAMMAR_ONLY:
        with pytest.raises(StructuredOutputError, match="xgrammar"):
            accepts(manager, tokenizer, grammar, backend, text)
        return
    assert accepts(manager, tokenizer, grammar, backend, text), text
    bad = [canonical(name, [("set_alarm", {"at": {"hour": 7, "minute": 30}})]),  # required
           canonical(name, [("launch_rocket", {})])]  # unknown tool
    if backend != "outlines":  # outlines enforces no number bounds
        bad.append(canonical(name, [("get_weather", {"city": "Rome", "days": 9})]))
    for text in bad:
        assert not accepts(manager, tokenizer, grammar, backend, text), text

    plan = plan_tool_choice(chat_request(tools_for(name), tool_choice=named("set_alarm")),
                            parser(name))
    assert plan.finish_reason == "stop" and plan.named == "set_alarm"
    grammar = plan.structured_outputs.structural_tag
    assert accepts(manager, tokenizer, grammar, backend, canonical(name, CALLS[2:]))
    for text in (canonical(name, CALLS[:1]), canonical(name, CALLS[2:] * 2)):
        assert not accepts(manager, tokenizer, grammar, backend, text), text


@pytest.mark.parametrize("name", [n for n in NAMES if parser(n).formats[0].marker and not
                                  isinstance(parser(n).formats[0].encoding, HarmonyMessage)])
def test_strict_tools_in_auto_mode(manager, tokenizer, name):
    """Strict tools: free text, then a call held to the schema once the marker is written."""
    weather = tools_for(name)[0]
    strict = {**weather, "function": {**weather["function"], "strict": True}}
    plan = plan_tool_choice(chat_request([strict, CLOCK]), parser(name))
    grammar = plan.structured_outputs.structural_tag
    good = canonical(name, CALLS[:1])
    assert accepts(manager, tokenizer, grammar, "xgrammar", "Let me check. " + good)
    bad = canonical(name, [("get_weather", {"city": "Rome", "days": 9})])
    assert not accepts(manager, tokenizer, grammar, "xgrammar", "Let me check. " + bad)


def test_strict_harmony_in_auto_mode(manager, tokenizer):
    strict = {**WEATHER, "function": {**WEATHER["function"], "strict": True}}
    plan = plan_tool_choice(chat_request([strict, CLOCK]), parser("openai"))
    grammar = plan.structured_outputs.structural_tag
    text = "<|channel|>analysis<|message|>Weather.<|end|><|start|>assistant" + \
        canonical("openai", CALLS[:1])
    assert accepts(manager, tokenizer, grammar, "xgrammar", text)
    assert not accepts(manager, tokenizer, grammar, "xgrammar", text.replace('"days": 3',
                                                                             '"days": 9'))


# --------------------------------------------------------------------------- what cannot be written

class _PluginParser(ToolParser):  # hand-written: no declarative format
    pass


def test_what_cannot_be_written_is_a_clear_error():
    """A schema a built markup cannot express raises, naming the parser: never a fallback to
    another format's grammar."""
    top_any_of = tool("pick", {"anyOf": [{"type": "object", "properties": {"a": {
        "type": "string"}}}, {"type": "object", "properties": {"b": {"type": "integer"}}}]})
    all_of = tool("pick", {"type": "object", "properties": {"a": {"allOf": [
        {"type": "string"}, {"maxLength": 3}]}}})
    not_identifier = tool("f", {"type": "object", "properties": {"my-key": {"type": "string"}}})
    for name, t in (("step3", top_any_of), ("minicpm5", top_any_of),
                    ("pythonic", not_identifier), ("functiongemma", all_of),
                    ("minimax-m3", WEATHER)):  # string bounds in nested tags
        for choice in ("required", named(t["function"]["name"])):
            with pytest.raises(ToolChoiceUnsupported, match=f"'{name}'") as e:
                plan_tool_choice(chat_request([t], tool_choice=choice), parser(name))
            assert isinstance(e.value, ValueError)
    # auto mode: strict tools there are left to the parser, as are formats with no marker
    strict = {**not_identifier, "function": {**not_identifier["function"], "strict": True}}
    plan = plan_tool_choice(chat_request([strict]), parser("pythonic"))
    assert plan.parser_cls is parser("pythonic") and plan.structured_outputs is None
    with pytest.raises(UnsupportedToolFormat, match="start marker"):
        parser("xlam").tool_call_grammar([WEATHER], mode="auto")


@pytest.mark.parametrize("parser_cls", [None, _PluginParser])
def test_hermes_only_without_a_declared_format(parser_cls):
    plan = plan_tool_choice(chat_request(tool_choice="required"), parser_cls)
    assert plan.parser_cls is parser("hermes")
    tags = plan.structured_outputs.structural_tag["format"]["tags"]
    assert tags[0]["begin"].startswith('<tool_call>\n{"name": ')


def test_llguidance_names_xgrammar_for_styles_it_cannot_write(manager):
    plan = plan_tool_choice(chat_request(M3_TOOLS, tool_choice="required"), parser("minimax_m3"))
    for backend in ("llguidance", "outlines"):
        with pytest.raises(StructuredOutputError,
                           match=f"{backend} backend cannot write .* use the xgrammar backend"):
            manager.compile(StructuredOutputsParams(
                structural_tag=plan.structured_outputs.structural_tag, backend=backend))


# --------------------------------------------------------------------------- tiny model

@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return LLMEngine(model=str(tiny_llama_dir), dtype="float32", block_size=16,
                     max_num_seqs=2 * len(NAMES), max_num_batched_tokens=2048,
                     max_model_len=512, kv_cache_memory=48 * 2**20)


PROMPTS = ["Call a tool.", "What's the weather in Paris?", "Wake me at 7.", "Time?"]


@pytest.fixture(scope="module")
def forced_outputs(tiny):
    """Per format: tool_choice required (one call) and a named function, all in one batch
    (~25 s on 2 cores: a random model writes 20-300 tokens of markup per call)."""
    runs = []  # (name, request, index)
    for i, name in enumerate(NAMES):
        tools = tools_for(name)
        for request in (chat_request(tools, tool_choice="required", parallel_tool_calls=False),
                        chat_request(tools, tool_choice=named("set_alarm"))):
            plan = plan_tool_choice(request, parser(name))
            params = SamplingParams(temperature=0, max_tokens=400,  # greedy: ~2x faster
                                    structured_outputs=plan.structured_outputs)
            tiny.add_request(str(len(runs)), PROMPTS[len(runs) % len(PROMPTS)], params)
            runs.append((name, request))
    done = {}
    while tiny.has_unfinished_requests():
        for out in tiny.step():
            if out.finished:
                done[out.request_id] = out.outputs[0]
    return [(name, request, done[str(i)]) for i, (name, request) in enumerate(runs)]


@pytest.mark.parametrize("name", NAMES)
def test_tiny_model_forced_into_each_format(forced_outputs, tokenizer, name):
    """What the grammar lets even a random model write, the format's parser reads back: one
    call (the named one when named), a known tool, arguments valid against its schema."""
    runs = [(r, out) for n, r, out in forced_outputs if n == name]
    assert len(runs) == 2
    for request, out in runs:
        assert out.finish_reason == "stop", out.text  # the grammar ended the output
        calls = read_back(name, out.text, request, tokenizer)
        assert len(calls) == 1, out.text
        function, arguments = calls[0]
        if not isinstance(request.tool_choice, str):
            assert function == "set_alarm", out.text
        assert function in SCHEMAS, out.text
        jsonschema.validate(arguments, SCHEMAS[function])


def test_server_answers_400_naming_the_parser(tokenizer):
    """The chat endpoint turns a format that cannot be forced into OpenAI's 400 error, before
    anything is generated."""
    import asyncio
    from types import SimpleNamespace

    from callm.entrypoints.openai.serving_chat import OpenAIServingChat
    from callm.entrypoints.openai.serving_common import APIError, ServingContext

    ctx = ServingContext(engine=SimpleNamespace(tokenizer=tokenizer), model_names=["m"],
                         max_model_len=512, metrics=None, tool_parser_name="step3")
    top_any_of = tool("pick", {"anyOf": [{"type": "object", "properties": {"a": {
        "type": "string"}}}, {"type": "object", "properties": {"b": {"type": "integer"}}}]})
    request = chat_request([top_any_of], tool_choice="required")

    async def connected():
        return False

    with pytest.raises(APIError) as e:
        asyncio.run(OpenAIServingChat(ctx).create(request, connected))
    assert (e.value.status, e.value.param) == (400, "tool_choice")
    assert "'step3'" in e.value.message and "anyOf" in e.value.message
