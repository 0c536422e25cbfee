"""Structured outputs through the real server and the `openai` client: tool_choice required and
named, parallel_tool_calls=false, strict tools in auto mode, response_format and the
`structured_outputs` extension — streamed and not, on the embedded SmolLM2 (Hermes parser) and
on the tiny model's server, which has no tool parser (required/named then use the Hermes
encoding)."""

import asyncio
import json

import jsonschema
import openai
import pytest

from structured_schemas import CASES, tool, validation_error
from test_server import MODEL, assert_still_serving, collect_chat_stream

SMOL = "smollm2-135m-instruct"
WEATHER = tool("get_weather", "Get the current weather in a city", {
    "type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False})
ADD = tool("add", "Add two numbers", {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"]})
BY_NAME = {t["function"]["name"]: t for t in (WEATHER, ADD)}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def calls_of(message) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls or []]


def streamed_calls(choice: dict) -> list[tuple[str, dict]]:
    return [(c["name"], json.loads(c["arguments"])) for c in choice["tool_calls"].values()]


def both(client, **args):
    """The whole response and the accumulated stream of the same request."""
    whole = client.chat.completions.create(**args)
    choices, _ = collect_chat_stream(client.chat.completions.create(stream=True, **args))
    return whole.choices[0], choices[0]


@pytest.mark.parametrize("tool_choice, parallel, finish", [
    ("required", False, "tool_calls"),
    ({"type": "function", "function": {"name": "get_weather"}}, True, "stop"),
    ({"type": "function", "function": {"name": "add"}}, True, "stop"),
])
def test_required_and_named(smollm, tool_choice, parallel, finish):
    whole, streamed = both(smollm, model=SMOL, messages=ASK, tools=[WEATHER, ADD],
                           tool_choice=tool_choice, parallel_tool_calls=parallel,
                           temperature=0, max_tokens=80)
    assert whole.finish_reason == finish and streamed["finish_reason"] == finish
    assert whole.message.content is None and streamed["content"] == ""
    calls = calls_of(whole.message)
    assert len(calls) == 1 and streamed_calls(streamed) == calls
    name, arguments = calls[0]
    if isinstance(tool_choice, dict):
        assert name == tool_choice["function"]["name"]
    assert validation_error(BY_NAME[name], json.dumps(arguments)) is None
    assert whole.message.tool_calls[0].id.startswith("call_")


def test_required_parallel_calls_all_valid(smollm):
    """SmolLM2 keeps calling once it has started; every complete call is valid."""
    whole, streamed = both(smollm, model=SMOL, messages=ASK, tools=[WEATHER, ADD],
                           tool_choice="required", temperature=0, max_tokens=120)
    calls = calls_of(whole.message) if whole.finish_reason == "tool_calls" else None
    if calls is None:  # cut at max_tokens: the last call may be incomplete
        assert whole.finish_reason == "length"
        calls = [(c.function.name, c.function.arguments) for c in whole.message.tool_calls][:-1]
        calls = [(n, json.loads(a)) for n, a in calls]
    assert calls
    for name, arguments in calls:
        assert validation_error(BY_NAME[name], json.dumps(arguments)) is None
    assert [c["name"] for c in streamed["tool_calls"].values()] == \
        [c.function.name for c in whole.message.tool_calls]


def test_named_calls_concurrently_over_varied_schemas(smollm):
    """Eight schemas at once (the server batches them); each call validates."""
    async_client = openai.AsyncOpenAI(base_url=smollm.base_url, api_key="unused", timeout=120)
    cases = CASES[::3][:8]

    async def one(spec, question):
        return await async_client.chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": question}], tools=[spec],
            tool_choice={"type": "function", "function": {"name": spec["function"]["name"]}},
            temperature=0, max_tokens=120)

    async def all_of():
        return await asyncio.gather(*[one(s, q) for s, q in cases])

    responses = asyncio.run(all_of())
    for (spec, _), response in zip(cases, responses):
        choice = response.choices[0]
        assert choice.finish_reason == "stop"
        [call] = choice.message.tool_calls
        assert call.function.name == spec["function"]["name"]
        assert validation_error(spec, call.function.arguments) is None


def test_strict_tool_in_auto_mode(smollm):
    """Free text is allowed, but once the model writes `<tool_call>` the strict tool's grammar
    holds the call to a valid name and arguments."""
    strict = {**WEATHER, "function": {**WEATHER["function"], "strict": True}}
    whole, streamed = both(smollm, model=SMOL, tools=[strict], temperature=0, max_tokens=60,
                           messages=[{"role": "user",
                                      "content": "Repeat after me exactly: <tool_call>"}])
    assert whole.finish_reason == "tool_calls" == streamed["finish_reason"]
    [(name, arguments)] = calls_of(whole.message)
    assert name == "get_weather" and validation_error(WEATHER, json.dumps(arguments)) is None
    assert streamed_calls(streamed) == [(name, arguments)]
    # plain questions are still answered in text
    text = smollm.chat.completions.create(model=SMOL, tools=[strict], temperature=0,
                                          max_tokens=30, messages=[{
                                              "role": "user", "content": "Say hello."}])
    assert text.choices[0].message.content and not text.choices[0].message.tool_calls


def test_response_format_json_schema(smollm):
    schema = {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["name", "age", "languages"], "additionalProperties": False}
    args = dict(model=SMOL, temperature=0, max_tokens=100, messages=[{
        "role": "user", "content": "Give me a JSON object describing a person: name, age and "
                                   "the programming languages they know."}],
                response_format={"type": "json_schema", "json_schema": {
                    "name": "person", "schema": schema, "strict": True}})
    whole, streamed = both(smollm, **args)
    assert whole.finish_reason == "stop"
    jsonschema.validate(json.loads(whole.message.content), schema)
    assert streamed["content"] == whole.message.content


def test_backend_per_request_and_outlines_limits(smollm):
    for backend in ("llguidance", "outlines"):
        out = smollm.chat.completions.create(
            model=SMOL, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=60,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            extra_body={"structured_outputs": {"backend": backend}})
        [(name, arguments)] = calls_of(out.choices[0].message)
        assert validation_error(WEATHER, json.dumps(arguments)) is None
    strict = {**WEATHER, "function": {**WEATHER["function"], "strict": True}}
    with pytest.raises(openai.BadRequestError) as e:
        smollm.chat.completions.create(model=SMOL, messages=ASK, tools=[strict], max_tokens=5,
                                       extra_body={"structured_outputs": {"backend": "outlines"}})
    assert "outlines cannot express lazily triggered" in e.value.message


# --------------------------------------------------------------------------- tiny model server

GREEDY = dict(temperature=0)


def test_required_without_a_tool_parser_uses_hermes(server, client):
    """No --tool-call-parser: required/named are written in the Hermes encoding and parsed by
    the Hermes parser (even a random model produces a valid call)."""
    pick = tool("pick", "Pick a city", {"type": "object", "properties": {
        "city": {"enum": ["Paris", "Rome"]}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"], "additionalProperties": False})
    for choice, finish in (("required", "tool_calls"),
                           ({"type": "function", "function": {"name": "pick"}}, "stop")):
        whole, streamed = both(client, model=MODEL, messages=ASK, tools=[pick],
                               tool_choice=choice, parallel_tool_calls=False, max_tokens=150,
                               **GREEDY)
        assert whole.finish_reason == finish == streamed["finish_reason"]
        [(name, arguments)] = calls_of(whole.message)
        assert name == "pick" and validation_error(pick, json.dumps(arguments)) is None
        assert streamed_calls(streamed) == [(name, arguments)]
    assert_still_serving(server)


@pytest.mark.parametrize("backend", ["xgrammar", "llguidance", "outlines"])
def test_structured_outputs_extension(server, client, backend):
    so = {"backend": backend}
    out = client.completions.create(model=MODEL, prompt="Favourite color:", max_tokens=8,
                                    extra_body={"structured_outputs": {
                                        **so, "choice": ["red", "green", "blue"]}}, **GREEDY)
    assert out.choices[0].text in ("red", "green", "blue")
    assert out.choices[0].finish_reason == "stop"
    out = client.completions.create(model=MODEL, prompt="Phone:", max_tokens=12,
                                    extra_body={"structured_outputs": {
                                        **so, "regex": "[0-9]{3}-[0-9]{4}"}}, **GREEDY)
    assert len(out.choices[0].text) == 8 and out.choices[0].text[3] == "-"
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                               "n": {"enum": [1, 2, 3]}},
              "required": ["ok", "n"]}
    chat = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=20,
                                          extra_body={"structured_outputs": {
                                              **so, "json": schema}}, **GREEDY)
    jsonschema.validate(json.loads(chat.choices[0].message.content), schema)
    streamed, _ = collect_chat_stream(client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=20, stream=True,
        extra_body={"structured_outputs": {**so, "json": schema}}, **GREEDY))
    assert streamed[0]["content"] == chat.choices[0].message.content


@pytest.mark.parametrize("body, mentions, param", [
    ({"structured_outputs": {"regex": "(unclosed"}}, ["regex"], "structured_outputs"),
    ({"structured_outputs": {"json": {"type": "object"}, "regex": "a"}}, ["json and regex"],
     "structured_outputs"),
    ({"structured_outputs": {"grammar": 'start: "a"', "backend": "outlines"}},
     ["outlines", "grammar"], "structured_outputs"),
    ({"structured_outputs": {"regex": "a"}, "response_format": {"type": "json_object"}},
     ["response_format", "structured_outputs"], "response_format"),
])
def test_constraint_errors_are_400s(server, http, body, mentions, param):
    from test_server import assert_error_body

    for route, extra in (("/v1/completions", {"prompt": "x"}),
                         ("/v1/chat/completions", {"messages": ASK})):
        r = http.post(route, json={"model": MODEL, "max_tokens": 4, **extra, **body})
        error = assert_error_body(r, 400, mentions=mentions)
        if route == "/v1/completions":
            assert error["param"] == param, error
    assert_still_serving(server)
