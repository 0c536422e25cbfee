"""Wire types against the real openai client: what it sends parses, what we send it parses."""

import json
import re

import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

try:  # newer openai releases ship their HTTP stack as httpx2
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

from callm.entrypoints.openai.protocol import (
    AssistantMessage, ChatCompletionLogProb, ChatCompletionLogProbs,
    ChatCompletionNamedToolChoiceParam, ChatCompletionRequest, ChatCompletionResponse,
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice, ChatCompletionStreamResponse, ChatCompletionTopLogProb,
    ChatMessage, CompletionLogProbs, CompletionRequest, CompletionResponse,
    CompletionResponseChoice,
    DeltaFunctionCall, DeltaMessage, DeltaToolCall, ErrorInfo, ErrorResponse, FunctionCall,
    FunctionMessage, ModelCard, ModelList, ToolCall, ToolMessage, UsageInfo, random_tool_call_id)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
    "strict": True}}
TIME = {"type": "function", "function": {"name": "get_time"}}

FULL_REQUEST = {
    "model": "qwen2.5-coder-0.5b-instruct",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Prefer tools."}]},
        {"role": "user", "name": "ann", "content": [
            {"type": "text", "text": "Weather in Paris and in this photo?"},
            {"type": "image_url",
             "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "{\"temp_c\": 21}"},
        {"role": "assistant", "function_call": {"name": "get_time", "arguments": "{}"}},
        {"role": "function", "name": "get_time", "content": "12:00"},
        {"role": "user", "content": "And Rome?"},
    ],
    "tools": [WEATHER, TIME],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": "object"}, "strict": True}},
    "stream": True, "stream_options": {"include_usage": True},
    "temperature": 0.2, "top_p": 0.9, "n": 2, "seed": 7, "stop": ["\n\n"],
    "max_completion_tokens": 64, "presence_penalty": 0.5, "frequency_penalty": -0.5,
    "logit_bias": {"50256": -100.0}, "logprobs": True, "top_logprobs": 3, "user": "u1",
    "metadata": {"k": "v"}, "store": False,
    "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 1, "ignore_eos": False,
    "stop_token_ids": [2], "skip_special_tokens": False, "include_stop_str_in_output": True,
    "chat_template": "{{ messages }}", "chat_template_kwargs": {"enable_thinking": False},
    "add_generation_prompt": False, "continue_final_message": True, "echo": False,
}


def test_full_request_round_trips():
    req = ChatCompletionRequest.model_validate({**FULL_REQUEST, "some_future_field": 1})
    assert req.model_dump(mode="json", by_alias=True, exclude_unset=True) == FULL_REQUEST
    assert not hasattr(req, "some_future_field")
    assistant, tool, function = req.messages[3], req.messages[4], req.messages[6]
    assert isinstance(assistant, AssistantMessage) and assistant.content is None
    assert assistant.tool_calls[0].function.arguments == '{"city": "Paris"}'
    assert isinstance(tool, ToolMessage) and tool.tool_call_id == "call_abc"
    assert isinstance(function, FunctionMessage)
    assert isinstance(req.tool_choice, ChatCompletionNamedToolChoiceParam)
    assert req.tool_names() == ["get_weather", "get_time"]
    assert req.response_format.json_schema.json_schema == {"type": "object"}
    assert req.logit_bias == {50256: -100.0}
    assert req.effective_max_tokens() == 64


def test_messages_keep_template_specific_keys():
    req = ChatCompletionRequest(messages=[{"role": "user", "content": "x", "lang": "fr"}])
    assert req.messages[0].model_dump()["lang"] == "fr"


def test_effective_max_tokens():
    msgs = [{"role": "user", "content": "x"}]
    assert ChatCompletionRequest(messages=msgs).effective_max_tokens() is None
    assert ChatCompletionRequest(messages=msgs, max_tokens=5).effective_max_tokens() == 5
    both = ChatCompletionRequest(messages=msgs, max_tokens=5, max_completion_tokens=9)
    assert both.effective_max_tokens() == 9


@pytest.mark.parametrize("tools, choice, expected", [
    (None, None, "none"),
    ([WEATHER], None, "auto"),
    ([WEATHER], "none", "none"),
    ([WEATHER], "required", "required"),
    (None, "auto", "none"),  # nothing to call
])
def test_tool_choice_defaults(tools, choice, expected):
    body = {"messages": [{"role": "user", "content": "x"}], "tools": tools}
    if choice is not None:
        body["tool_choice"] = choice
    assert ChatCompletionRequest.model_validate(body).tool_choice == expected


BAD_REQUESTS = [  # (patch, field the error is about, words in the message)
    ({"temperature": 2.5}, "temperature", "less than or equal to 2"),
    ({"temperature": -0.1}, "temperature", "greater than or equal to 0"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"presence_penalty": 2.1}, "presence_penalty", "less than or equal to 2"),
    ({"frequency_penalty": -3}, "frequency_penalty", "greater than or equal to -2"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20"),
    ({"top_logprobs": 2}, "top_logprobs", "top_logprobs requires logprobs=true"),
    ({"logprobs": False, "top_logprobs": 0}, "top_logprobs", "requires logprobs"),
    ({"logit_bias": {"5": 101}}, "logit_bias", "less than or equal to 100"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"tools": []}, "tools", "tools must not be empty; omit it"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     "tool_choice", "needs tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "'nope', which is not in tools"),
    ({"tool_choice": "sometimes"}, "tool_choice", "sometimes"),
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages", "tool_call_id"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages", "bot"),
    ({"response_format": {"type": "yaml"}}, "response_format", "yaml"),
    ({"continue_final_message": True}, "continue_final_message", "add_generation_prompt=false"),
]


@pytest.mark.parametrize("patch, field, words", BAD_REQUESTS)
def test_invalid_chat_request_names_the_field(patch, field, words):
    body = {"messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    errors = info.value.errors()  # a union reports one error per member, all at the same field
    assert {e["loc"][0] for e in errors} == {field}, errors
    assert words in str(info.value)


@pytest.mark.parametrize("prompt", ["hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_completion_prompt_forms(prompt):
    req = CompletionRequest(prompt=prompt, extra_field=True)
    assert req.prompt == prompt and req.effective_max_tokens() == 16 and req.echo is False


@pytest.mark.parametrize("patch, field", [
    ({"prompt": []}, "prompt"), ({"logprobs": 6}, "logprobs"), ({"logprobs": -1}, "logprobs"),
    ({"temperature": 3}, "temperature"), ({"max_tokens": -1}, "max_tokens")])
def test_invalid_completion_request_names_the_field(patch, field):
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"prompt": "x", **patch})
    assert {e["loc"][0] for e in info.value.errors()} == {field}


def test_random_tool_call_id():
    ids = {random_tool_call_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)
    call = ToolCall(function=FunctionCall(name="f", arguments="{}"))
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call.id)


# --------------------------------------------------------------------------- responses

def tool_call_response() -> ChatCompletionResponse:
    call = ToolCall(function=FunctionCall(name="get_weather", arguments='{"city": "Rome"}'))
    lp = ChatCompletionLogProb(token="<tool_call>", logprob=float("-inf"), bytes=[60],
                               top_logprobs=[ChatCompletionTopLogProb(token="x", logprob=-1.5)])
    return ChatCompletionResponse(model="m", usage=UsageInfo(prompt_tokens=5, completion_tokens=3,
                                                             total_tokens=8), choices=[
        ChatCompletionResponseChoice(index=0, message=ChatMessage(content=None, tool_calls=[call]),
                                     logprobs=ChatCompletionLogProbs(content=[lp]),
                                     finish_reason="tool_calls"),
        ChatCompletionResponseChoice(index=1, message=ChatMessage(content="Sunny."),
                                     finish_reason="stop")])


def test_chat_response_parses_as_openai_type():
    ours = tool_call_response()
    theirs = ChatCompletion.model_validate_json(ours.model_dump_json())
    assert theirs.id.startswith("chatcmpl-") and theirs.object == "chat.completion"
    call = theirs.choices[0].message.tool_calls[0]
    assert call.id == ours.choices[0].message.tool_calls[0].id and call.type == "function"
    assert json.loads(call.function.arguments) == {"city": "Rome"}
    assert theirs.choices[0].logprobs.content[0].logprob == -9999.0  # -inf is not JSON
    assert theirs.choices[1].message.content == "Sunny." and theirs.usage.total_tokens == 8
    assert ChatCompletion.model_validate(ours.model_dump()).choices[0].finish_reason == "tool_calls"


def test_chat_message_wire_shape():
    wire = json.loads(tool_call_response().model_dump_json())
    assert wire["choices"][0]["message"]["content"] is None  # kept, as OpenAI sends it
    assert wire["choices"][1]["message"] == {"role": "assistant", "content": "Sunny."}


def chunks() -> list[ChatCompletionStreamResponse]:
    """A streamed tool call as OpenAI sends it: role, then name, then argument fragments."""
    def chunk(delta=None, finish=None, usage=None, choices=True):
        choice = ChatCompletionResponseStreamChoice(index=0, delta=delta or DeltaMessage(),
                                                    finish_reason=finish)
        return ChatCompletionStreamResponse(id="chatcmpl-1", created=1, model="m", usage=usage,
                                            choices=[choice] if choices else [])
    first = DeltaToolCall(index=0, id="call_1", type="function",
                          function=DeltaFunctionCall(name="get_weather", arguments=""))
    return [chunk(DeltaMessage(role="assistant", content="")),
            chunk(DeltaMessage(tool_calls=[first])),
            chunk(DeltaMessage(tool_calls=[DeltaToolCall(index=0, function=DeltaFunctionCall(
                arguments='{"city": '))])),
            chunk(DeltaMessage(tool_calls=[DeltaToolCall(index=0, function=DeltaFunctionCall(
                arguments='"Rome"}'))])),
            chunk(finish="tool_calls"),
            chunk(usage=UsageInfo(prompt_tokens=5, completion_tokens=4, total_tokens=9),
                  choices=False)]


def test_stream_chunk_wire_shape_matches_openai():
    wire = [json.loads(c.model_dump_json()) for c in chunks()]
    assert wire[0]["object"] == "chat.completion.chunk"
    assert wire[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                   "logprobs": None, "finish_reason": None}]
    assert wire[1]["choices"][0]["delta"] == {"tool_calls": [{
        "index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]}
    assert wire[2]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}
    assert wire[4]["choices"][0]["delta"] == {}
    assert wire[4]["choices"][0]["finish_reason"] == "tool_calls"
    assert wire[5]["choices"] == [] and wire[5]["usage"]["total_tokens"] == 9
    assert DeltaMessage().model_dump() == {}  # no "tool_calls": [] on text deltas


def test_stream_chunks_parse_as_openai_type():
    for ours in chunks():
        ChatCompletionChunk.model_validate(ours.model_dump())
        theirs = ChatCompletionChunk.model_validate_json(ours.model_dump_json())
        assert theirs.id == ours.id
    theirs = ChatCompletionChunk.model_validate(chunks()[1].model_dump())
    call = theirs.choices[0].delta.tool_calls[0]
    assert (call.index, call.id, call.function.name) == (0, "call_1", "get_weather")


def test_delta_accepts_vllm_style_dict_function():
    # Ported vLLM parsers pass `function=DeltaFunctionCall(...).model_dump(exclude_none=True)`.
    fragment = DeltaFunctionCall(arguments="{}").model_dump(exclude_none=True)
    delta = DeltaToolCall(index=1, function=fragment)
    assert delta.function == DeltaFunctionCall(arguments="{}")


def test_completion_response_parses_as_openai_type():
    ours = CompletionResponse(model="m", usage=UsageInfo(), choices=[CompletionResponseChoice(
        index=0, text=" world", finish_reason="length", logprobs=CompletionLogProbs(
            text_offset=[0], token_logprobs=[-0.1], tokens=[" world"],
            top_logprobs=[{" world": -0.1}]))])
    theirs = Completion.model_validate_json(ours.model_dump_json())
    assert theirs.id.startswith("cmpl-") and theirs.choices[0].logprobs.tokens == [" world"]


# --------------------------------------------------------------------------- through the client

def client_for(handler) -> openai.OpenAI:
    http = openai.DefaultHttpxClient(transport=httpx.MockTransport(handler))
    return openai.OpenAI(base_url="http://callm.test/v1", api_key="sk-test", max_retries=0,
                         http_client=http)


def test_openai_client_round_trip():
    seen = []

    def handler(request):
        if request.url.path == "/v1/models":
            models = ModelList(data=[ModelCard(id="m", max_model_len=8192)])
            return httpx.Response(200, content=models.model_dump_json())
        seen.append(ChatCompletionRequest.model_validate_json(request.content))
        if seen[-1].stream:
            events = [f"data: {c.model_dump_json()}\n\n" for c in chunks()] + ["data: [DONE]\n\n"]
            body = "".join(events)
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=tool_call_response().model_dump_json())

    client = client_for(handler)
    assert [m.id for m in client.models.list()] == ["m"]
    messages = FULL_REQUEST["messages"]
    done = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER, TIME],
                                          tool_choice="required", max_tokens=10)
    assert done.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert seen[-1].tool_choice == "required" and seen[-1].effective_max_tokens() == 10
    assert seen[-1].messages[4].tool_call_id == "call_abc"

    stream = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER],
                                            stream=True, stream_options={"include_usage": True})
    args, usage = "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                args += call.function.arguments or ""
        usage = chunk.usage or usage
    assert json.loads(args) == {"city": "Rome"} and usage.total_tokens == 9
    assert seen[-1].stream_options.include_usage and seen[-1].tool_choice == "auto"


def test_error_response_becomes_openai_exception():
    error = ErrorResponse(error=ErrorInfo(message="tool_choice names function 'nope', which is "
                                                  "not in tools", param="tool_choice", code=400))
    client = client_for(lambda request: httpx.Response(400, content=error.model_dump_json()))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert "not in tools" in str(info.value) and info.value.param == "tool_choice"
    assert info.value.type == "invalid_request_error"
