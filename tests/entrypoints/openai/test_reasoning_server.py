"""A thinking model behind the real server, with the real `openai` client: the tiny random Llama
under a hand-written Qwen3-style template (`tests/thinking_template.py`, whose generation prompt
opens `<think>`), served with `--reasoning-parser qwen3 --enable-auto-tool-choice
--tool-call-parser hermes`.

The random model never ends a thought by itself, so `thinking_token_budget` is what ends it:
the budget forces `</think>`, then the request's grammar (tool_choice required, a JSON schema)
holds from there. The thought goes out as both `reasoning` and `reasoning_content`, never in
`content`; usage counts its tokens; stream == whole; earlier thoughts go back to the template.
"""

import json

import httpx
import jsonschema
import pytest

from conftest import TINY_MODEL_NAME, Server, serve_app
from test_server import assert_error_body, assert_still_serving
from thinking_template import THINKING_TEMPLATE, WEATHER

from callm.entrypoints.openai.api_server import build_app, build_context

MODEL = TINY_MODEL_NAME
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
          "required": ["n", "ok"], "additionalProperties": False}
MARKUP = ("<think>", "</think>", "<tool_call>", "</tool_call>")


class _Any:
    def __eq__(self, other):
        return True


ANY = _Any()


@pytest.fixture(scope="module")
def thinking(tiny_engine):
    """The shared tiny engine behind an app with the qwen3 reasoning parser, auto tool choice
    with the hermes parser, and the thinking template."""
    ctx = build_context(tiny_engine, [MODEL], True, "hermes", THINKING_TEMPLATE, "qwen3")
    with serve_app(build_app(ctx)) as url:
        yield Server(url, tiny_engine, MODEL)


@pytest.fixture
def http(thinking):
    with httpx.Client(base_url=thinking.url, timeout=60) as c:
        yield c


def post(http, **body) -> dict:
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, **body})
    assert r.status_code == 200, r.text
    return r.json()


def stream(http, **body) -> tuple[dict, dict]:
    """The stream of `body`, reassembled the way a client does: (message, usage). Every delta
    that carries a thought carries it under both names."""
    body = {"model": MODEL, "messages": ASK, "stream": True,
            "stream_options": {"include_usage": True}, **body}
    message = {"reasoning": "", "content": "", "tool_calls": {}, "finish_reason": None}
    usage = None
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            assert "error" not in chunk, chunk
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                delta = choice["delta"]
                assert delta.get("reasoning") == delta.get("reasoning_content"), delta
                message["reasoning"] += delta.get("reasoning") or ""
                message["content"] += delta.get("content") or ""
                for tc in delta.get("tool_calls") or []:
                    call = message["tool_calls"].setdefault(tc["index"], {"name": "",
                                                                          "arguments": ""})
                    call["name"] += (tc.get("function") or {}).get("name") or ""
                    call["arguments"] += (tc.get("function") or {}).get("arguments") or ""
                if choice.get("finish_reason"):
                    assert message["finish_reason"] is None, "finish_reason sent twice"
                    message["finish_reason"] = choice["finish_reason"]
    return message, usage


def as_streamed(whole: dict) -> dict:
    """A whole response's choice in the shape `stream` reassembles."""
    [choice] = whole["choices"]
    message = choice["message"]
    return {"reasoning": message.get("reasoning") or "", "content": message["content"] or "",
            "tool_calls": {i: {"name": c["function"]["name"],
                               "arguments": c["function"]["arguments"]}
                           for i, c in enumerate(message.get("tool_calls") or [])},
            "finish_reason": choice["finish_reason"]}


def assert_thought(whole: dict) -> str:
    """The response has a thought under both names and no markup in its content."""
    message = whole["choices"][0]["message"]
    assert message["reasoning"] and message["reasoning"] == message["reasoning_content"], message
    assert not any(m in message["reasoning"] for m in MARKUP), message
    assert message["content"] is None or not any(m in message["content"] for m in MARKUP), message
    usage = whole["usage"]
    reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
    assert 0 < reasoning_tokens < usage["completion_tokens"], usage
    return message["reasoning"]


# --------------------------------------------------------------------------- budget + tools

def test_budget_then_required_tool_call(thinking, http):
    """The model thinks its 6 tokens, the budget closes the thought, the grammar writes one
    Hermes call: reasoning, then a schema-valid call, no markup in content."""
    client = thinking.client()
    args = dict(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
                parallel_tool_calls=False, temperature=0, seed=7, max_tokens=120,
                extra_body={"thinking_token_budget": 6})
    out = client.chat.completions.create(**args)
    [choice] = out.choices
    assert choice.finish_reason == "tool_calls"
    message = choice.message
    extra = message.model_extra or {}
    assert extra.get("reasoning") and extra["reasoning"] == extra.get("reasoning_content")
    assert message.content is None or not any(m in message.content for m in MARKUP)
    [call] = message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    assert out.usage.completion_tokens_details.reasoning_tokens == 6  # exactly the budget

    whole = post(http, **{k: v for k, v in args.items() if k not in ("model", "messages",
                                                                        "extra_body")},
                 thinking_token_budget=6)
    assert assert_thought(whole) == extra["reasoning"]
    assert whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == \
        call.function.arguments
    streamed, usage = stream(http, tools=[WEATHER], tool_choice="required",
                             parallel_tool_calls=False, temperature=0, seed=7, max_tokens=120,
                             thinking_token_budget=6)
    assert streamed == as_streamed(whole)
    assert usage == whole["usage"]

    # the openai client's stream: the thought in each delta's extra fields
    reasoning, names, arguments = "", "", ""
    for chunk in client.chat.completions.create(stream=True, **args):
        for c in chunk.choices:
            reasoning += (c.delta.model_extra or {}).get("reasoning_content") or ""
            for tc in c.delta.tool_calls or []:
                names += tc.function.name or ""
                arguments += tc.function.arguments or ""
    assert (reasoning, names, arguments) == (extra["reasoning"], "get_weather",
                                             call.function.arguments)
    thinking.wait_idle()


def test_budget_zero_skips_the_thought(http):
    """Budget 0: `</think>` is forced at once, so no thought; the call follows."""
    whole = post(http, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                 temperature=0, max_tokens=120, thinking_token_budget=0)
    message = whole["choices"][0]["message"]
    assert "reasoning" not in message and "reasoning_content" not in message, message
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    [call] = message["tool_calls"]
    jsonschema.validate(json.loads(call["function"]["arguments"]),
                        WEATHER["function"]["parameters"])


def test_budget_holds_for_every_sample(http):
    """n=2 samples share the request's budget processor; each thought is cut at the budget and
    each sample then makes its call; usage sums both thoughts."""
    whole = post(http, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
                 n=2, temperature=1.0, seed=11, max_tokens=120, thinking_token_budget=4)
    assert len(whole["choices"]) == 2
    for choice in whole["choices"]:
        message = choice["message"]
        assert message["reasoning"] and choice["finish_reason"] == "tool_calls", choice
        [call] = message["tool_calls"]
        jsonschema.validate(json.loads(call["function"]["arguments"]),
                            WEATHER["function"]["parameters"])
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8


# --------------------------------------------------------------------------- thinking off

def test_enable_thinking_false_gives_content_only(http):
    """The template writes an empty thought; the output is all answer (a budget changes nothing)."""
    args = dict(temperature=0, max_tokens=8, chat_template_kwargs={"enable_thinking": False})
    whole = post(http, **args)
    [choice] = whole["choices"]
    message = choice["message"]
    assert "reasoning" not in message and "reasoning_content" not in message, message
    assert message["content"] and choice["finish_reason"] == "length"
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert post(http, thinking_token_budget=2, **args) == {**whole, "id": ANY, "created": ANY}
    streamed, _ = stream(http, **args)
    assert streamed == as_streamed(whole)


def test_thinking_without_budget_stays_in_the_thought(http):
    """The random model never writes `</think>`: everything is thought, nothing is content."""
    whole = post(http, temperature=0, max_tokens=10)
    message = whole["choices"][0]["message"]
    assert message["reasoning"] and message["content"] is None
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 10


# --------------------------------------------------------------------------- budget + schema

@pytest.mark.parametrize("backend", ["xgrammar", "llguidance", "outlines"])
def test_budget_then_json_schema(http, backend):
    body = dict(temperature=0, seed=3, max_tokens=100, thinking_token_budget=5,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "answer", "schema": SCHEMA}},
                structured_outputs={"backend": backend})
    whole = post(http, **body)
    assert_thought(whole)
    [choice] = whole["choices"]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5
    streamed, usage = stream(http, **body)
    assert streamed == as_streamed(whole) and usage == whole["usage"]


def test_backend_alone_constrains_nothing(http):
    """structured_outputs naming only a backend: the model thinks as it would without it."""
    plain = post(http, temperature=0, max_tokens=6)
    assert post(http, temperature=0, max_tokens=6, structured_outputs={"backend": "llguidance"},
                thinking_token_budget=50) == {**plain, "id": ANY, "created": ANY}


# --------------------------------------------------------------------------- history

EARLIER = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": None, "reasoning_content": "I should call the tool.",
     "tool_calls": [{"id": "call_1", "type": "function", "function": {
         "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    {"role": "assistant", "content": "Sunny and 21 C.", "reasoning": "The tool said sunny."},
    {"role": "user", "content": "And tomorrow?"},
]


def _without_thoughts(messages):
    return [{k: v for k, v in m.items() if k not in ("reasoning", "reasoning_content")}
            for m in messages]


def test_earlier_thoughts_reach_the_template(thinking, http):
    """An earlier turn's `reasoning_content` (and one's `reasoning`, vLLM's newer name) are
    rendered by the template: in /tokenize's prompt and in what the chat request ran."""
    r = http.post("/tokenize", json={"model": MODEL, "messages": EARLIER})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    prompt = http.post("/detokenize", json={"model": MODEL, "tokens": tokens}).json()["prompt"]
    assert "<think>\nI should call the tool.\n</think>\n\n<tool_call>\n" in prompt
    assert "<think>\nThe tool said sunny.\n</think>\n\nSunny and 21 C." in prompt
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")

    out = thinking.client().chat.completions.create(model=MODEL, messages=EARLIER, max_tokens=1,
                                                    temperature=0)
    assert out.usage.prompt_tokens == len(tokens)  # the chat request rendered the same prompt
    bare = http.post("/tokenize", json={"model": MODEL, "messages": _without_thoughts(EARLIER)})
    assert bare.json()["count"] < len(tokens)


def test_reasoning_effort_reaches_the_template(thinking):
    client = thinking.client()
    plain = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=1)
    high = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=1,
                                          reasoning_effort="high")
    tokens = len(thinking.engine.engine.tokenizer.encode(
        "<|im_start|>system\nReasoning effort: high<|im_end|>\n", add_special_tokens=False))
    assert high.usage.prompt_tokens == plain.usage.prompt_tokens + tokens


# --------------------------------------------------------------------------- errors

def test_budget_without_reasoning_parser_is_a_400(server):
    """The plain server has no --reasoning-parser: the budget cannot be honoured."""
    with httpx.Client(base_url=server.url, timeout=60) as h:
        r = h.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK,
                                                  "thinking_token_budget": 8})
        error = assert_error_body(r, 400, param="thinking_token_budget",
                                  mentions=["thinking_token_budget", "--reasoning-parser"])
        assert error["type"] == "invalid_request_error"
        r = h.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK,
                                                  "thinking_token_budget": -1})
        assert_error_body(r, 400, param="thinking_token_budget")
    assert_still_serving(server)
