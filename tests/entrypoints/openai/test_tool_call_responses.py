"""What /v1/chat/completions returns for tool calls, whole and streamed, from scripted engine
outputs (no model): finish_reason "tool_calls" only when calls are returned, arguments always a
JSON object except for a call cut off by max_tokens (finish_reason "length"), parallel_tool_calls
false keeping one call in both paths, and the stream adding up to the whole response."""

import asyncio
import json
from types import SimpleNamespace

import pytest

from callm.engine.request import CompletionOutput, RequestOutput
from callm.entrypoints.chat import ChatPipeline, PreparedChat
from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.entrypoints.openai.serving_chat import Generation, OpenAIServingChat
from callm.entrypoints.openai.serving_common import RequestTimer
from callm.metrics import Metrics
from callm.tool_parsers import ToolParserManager
from callm.tool_parsers.grammar import ToolChoicePlan

TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
         for name in ("get_weather", "get_time")]
WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TIME = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'


def serving(parser: str = "hermes") -> OpenAIServingChat:
    chat = OpenAIServingChat.__new__(OpenAIServingChat)  # no engine: outputs are scripted
    chat.ctx = SimpleNamespace(metrics=Metrics(), tokenizer=None, tool_parser_name=parser)
    chat.parser_cls = ToolParserManager.get_tool_parser(parser)
    chat.pipeline = ChatPipeline(None, None, chat.parser_cls)
    return chat


def engine_outputs(text: str, finish_reason: str, step: int = 3) -> list[RequestOutput]:
    """The engine's cumulative outputs for `text`, `step` characters (= tokens) at a time."""
    outputs = []
    for end in range(step, len(text) + step, step):
        end = min(end, len(text))
        done = end == len(text)
        outputs.append(RequestOutput("r", None, [1, 2, 3], [CompletionOutput(
            0, text[:end], list(range(end)), finish_reason=finish_reason if done else None)],
            finished=done))
    return outputs


async def _aiter(items):
    for item in items:
        yield item


def respond(text: str, finish_reason: str, *, stream: bool, plan: ToolChoicePlan | None = None,
            step: int = 3, **request_fields) -> dict:
    """The response as a client sees it: the whole response's choice, or the stream's deltas
    reassembled into the same shape (content, tool_calls, finish_reason)."""
    chat = serving()
    plan = plan or ToolChoicePlan(chat.parser_cls)
    request = ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                                    stream=stream, **request_fields)
    prepared = PreparedChat(request, "", plan)
    first, *rest = engine_outputs(text, finish_reason, step)

    def generation():
        return Generation(prepared, "id", "m", first, _aiter(rest), RequestTimer(), first)

    if not stream:
        async def connected():
            return False

        response = asyncio.run(chat._whole(generation(), connected))
        choice = response.choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
        return {"content": choice.message.content, "calls": calls,
                "finish_reason": choice.finish_reason}

    async def collect():
        return [line async for line in chat._stream(generation())]

    content, calls, finish = "", [], None
    for line in asyncio.run(collect()):
        if line.strip() == "data: [DONE]":
            break
        choice = json.loads(line[len("data: "):])["choices"][0]
        delta = choice["delta"]
        content += delta.get("content") or ""
        for tc in delta.get("tool_calls") or []:
            if tc["index"] == len(calls):
                assert tc["id"] and tc["function"]["name"]
                calls.append([tc["function"]["name"], tc["function"].get("arguments") or ""])
            else:
                assert tc["index"] == len(calls) - 1
                calls[tc["index"]][1] += tc["function"].get("arguments") or ""
        if choice["finish_reason"] is not None:
            assert finish is None
            finish = choice["finish_reason"]
    return {"content": content or None, "calls": [tuple(c) for c in calls],
            "finish_reason": finish}


def both(text: str, finish_reason: str, **kwargs) -> dict:
    """The whole response, after checking that every streaming of it adds up to the same."""
    whole = respond(text, finish_reason, stream=False, **kwargs)
    for step in (1, 3, 1000):
        streamed = respond(text, finish_reason, stream=True, step=step, **kwargs)
        assert _normalized(streamed) == _normalized(whole), (step, streamed, whole)
    return whole


def _normalized(response: dict) -> dict:
    def value(args):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return {**response, "calls": [(n, value(a)) for n, a in response["calls"]]}


def test_calls_finish_with_tool_calls():
    got = both("Checking.\n" + WEATHER + "\n" + TIME, "stop")
    assert got["finish_reason"] == "tool_calls"
    assert [(n, json.loads(a)) for n, a in got["calls"]] == [("get_weather", {"city": "Paris"}),
                                                             ("get_time", {})]
    assert got["content"] == "Checking."


@pytest.mark.parametrize("text", ["Just an answer.", "<tool_call>\nnot json\n</tool_call>",
                                  '<tool_call>\n{"name": "get_weather", "arguments": oops}'])
def test_no_calls_no_tool_calls_finish(text):
    got = both(text, "stop")
    assert got["calls"] == [] and got["finish_reason"] == "stop" and got["content"] == text


def test_cut_off_by_max_tokens_keeps_partial_arguments():
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'
    got = both(text, "length")
    assert got["finish_reason"] == "length"
    assert got["calls"] == [("get_weather", '{"city": "Par')]


@pytest.mark.parametrize("finish_reason", ["stop", "abort"])
def test_ended_mid_call_otherwise_closes_arguments(finish_reason):
    """A stop string or the end of the sequence inside a call: the arguments are closed, so
    the only partial arguments a client sees come with finish_reason "length"."""
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'
    got = both(text, finish_reason)
    assert got["calls"] == [("get_weather", '{"city": "Par"}')]
    assert got["finish_reason"] == "tool_calls"
    nested = both('<tool_call>{"name": "get_weather", "arguments": {"a": [1, {"b": 2', "stop")
    assert nested["calls"] == [("get_weather", '{"a": [1, {"b": 2}]}')]


def test_invalid_arguments_are_closed_where_they_went_wrong():
    got = both('<tool_call>{"name": "get_weather", "arguments": {"city": "Rome", x}}</tool_call>'
               "\nBye.", "stop")
    assert got["calls"] == [("get_weather", '{"city": "Rome"}')]
    assert got["content"] == "\nBye." and got["finish_reason"] == "tool_calls"


def test_parallel_tool_calls_false_keeps_the_first_call_in_both_paths():
    got = both(WEATHER + "\n" + TIME + "\nDone.", "stop", parallel_tool_calls=False)
    assert [n for n, _ in got["calls"]] == ["get_weather"]
    assert got["finish_reason"] == "tool_calls"


def test_named_function_finishes_with_stop():
    chat = serving()
    plan = ToolChoicePlan(chat.parser_cls, finish_reason="stop", named="get_weather")
    got = both(WEATHER, "stop", plan=plan)
    assert [n for n, _ in got["calls"]] == ["get_weather"] and got["finish_reason"] == "stop"
