"""The OpenAI-compatible server end to end: the real app on uvicorn, called with the real `openai`
client (raw httpx only for non-OpenAI routes and for bodies the client will not send).

Most tests share one tiny random Llama server (gibberish, but deterministic in float32); the
tool-parser plugin and the startup errors go through the real `callm serve` command; one module
of tests uses the embedded SmolLM2 where real text matters.
"""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

import callm
from callm.entrypoints.openai.api_server import MAX_BODY_BYTES

MODEL = "tiny-llama"  # the served name of the shared tiny server (see conftest.py)
HELLO = [{"role": "user", "content": "Hello! Tell me about tool calling."}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
GREEDY = dict(temperature=0, extra_body={"ignore_eos": True})


def chat(client, **kwargs):
    args = dict(model=MODEL, messages=HELLO, max_tokens=12)
    args.update(kwargs)
    return client.chat.completions.create(**args)


def collect_chat_stream(stream):
    """Accumulate a streamed chat completion per choice index, the way a client does."""
    choices: dict[int, dict] = {}
    ids, usage = set(), None
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            acc = choices.setdefault(c.index, {"role": None, "content": "", "tool_calls": {},
                                               "finish_reason": None, "tokens": 0})
            acc["role"] = acc["role"] or c.delta.role
            acc["content"] += c.delta.content or ""
            for tc in c.delta.tool_calls or []:
                call = acc["tool_calls"].setdefault(tc.index, {"id": None, "name": "",
                                                               "arguments": ""})
                call["id"] = call["id"] or tc.id
                if tc.function is not None:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
            if c.logprobs is not None and c.logprobs.content:
                acc["tokens"] += len(c.logprobs.content)
            if c.finish_reason is not None:
                assert acc["finish_reason"] is None, "finish_reason sent twice"
                acc["finish_reason"] = c.finish_reason
    assert len(ids) == 1, "every chunk of a stream carries the same id"
    return choices, usage


def collect_completion_stream(stream):
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason is not None:
                finish[c.index] = c.finish_reason
    return texts, finish, usage


def assert_error_body(response: httpx.Response, status: int, *, param=..., code=...,
                      mentions=()) -> dict:
    """OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    if param is not ...:
        assert error["param"] == param, error
    if code is not ...:
        assert error["code"] == code, error
    for word in mentions:
        assert word in error["message"], error
    return error


def assert_still_serving(server) -> None:
    out = server.client().completions.create(model=MODEL, prompt="still there?", max_tokens=2,
                                             **GREEDY)
    assert out.choices[0].finish_reason == "length"
    assert httpx.get(f"{server.url}/health").status_code == 200


def tokenize(http, **body) -> int:
    r = http.post("/tokenize", json=body)
    assert r.status_code == 200, r.text
    return r.json()["count"]


# --------------------------------------------------------------------------- simple routes

def test_health_and_version(http):
    assert http.get("/health").status_code == 200
    r = http.get("/version")
    assert r.status_code == 200 and r.json() == {"version": callm.__version__}


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    card = models.data[0]
    assert card.object == "model" and card.owned_by == "callm"
    assert card.model_extra["max_model_len"] == 512


def test_tokenize_detokenize_round_trip(http):
    text = "Hello world, tool calling: été!"
    r = http.post("/tokenize", json={"prompt": text, "model": MODEL})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["tokens"]) > 0 and body["max_model_len"] == 512
    back = http.post("/detokenize", json={"tokens": body["tokens"], "model": MODEL})
    assert back.status_code == 200 and back.json() == {"prompt": text}
    # errors on these routes are OpenAI-shaped too
    assert_error_body(http.post("/detokenize", json={"tokens": [10**9]}), 400, param="prompt")
    assert_error_body(http.post("/tokenize", json={"prompt": "x", "model": "nope"}), 404,
                      code="model_not_found")
    assert_error_body(http.post("/tokenize", json={}), 400)


# --------------------------------------------------------------------------- chat and completions

def test_chat_non_streamed(client):
    out = chat(client, **GREEDY)
    assert out.object == "chat.completion" and out.model == MODEL and out.id.startswith("chatcmpl-")
    [choice] = out.choices
    assert choice.index == 0 and choice.finish_reason == "length"
    assert choice.message.role == "assistant" and choice.message.content
    assert not choice.message.tool_calls
    assert out.usage.completion_tokens == 12
    assert out.usage.total_tokens == out.usage.prompt_tokens + 12


def test_chat_streamed_equals_non_streamed(client):
    whole = chat(client, **GREEDY)
    stream = chat(client, stream=True, stream_options={"include_usage": True}, **GREEDY)
    choices, usage = collect_chat_stream(stream)
    assert list(choices) == [0]
    assert choices[0]["role"] == "assistant"
    assert choices[0]["content"] == whole.choices[0].message.content
    assert choices[0]["finish_reason"] == "length"
    assert usage.model_dump() == whole.usage.model_dump()


def test_completion_non_streamed_and_streamed(client):
    args = dict(model=MODEL, prompt="The weather in Paris is", max_tokens=10, **GREEDY)
    whole = client.completions.create(**args)
    assert whole.object == "text_completion" and whole.model == MODEL
    [choice] = whole.choices
    assert choice.text and choice.finish_reason == "length"
    assert whole.usage.completion_tokens == 10
    texts, finish, usage = collect_completion_stream(client.completions.create(
        stream=True, stream_options={"include_usage": True}, **args))
    assert texts == {0: choice.text} and finish == {0: "length"}
    assert usage.model_dump() == whole.usage.model_dump()
    echoed = client.completions.create(echo=True, **args)
    assert echoed.choices[0].text == "The weather in Paris is" + choice.text


def test_usage_counts(client, http):
    """prompt_tokens is the /tokenize count of the rendered prompt; completion_tokens is the
    number of tokens that actually streamed (one logprob entry per token)."""
    stream = chat(client, max_tokens=20, stream=True, logprobs=True,
                  stream_options={"include_usage": True}, **GREEDY)
    choices, usage = collect_chat_stream(stream)
    assert usage.prompt_tokens == tokenize(http, messages=HELLO)
    assert usage.completion_tokens == choices[0]["tokens"] == 20
    assert usage.total_tokens == usage.prompt_tokens + 20

    prompt = "Count the tokens of this prompt, please."
    out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=7, logprobs=0,
                                    **GREEDY)
    assert out.usage.prompt_tokens == tokenize(http, prompt=prompt)
    assert out.usage.completion_tokens == len(out.choices[0].logprobs.tokens) == 7


def test_n_choices(client):
    out = chat(client, n=3, temperature=1.0, seed=5, max_tokens=8,
               extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == 24
    assert sorted(c.index for c in out.choices) == [0, 1, 2]
    texts = [c.message.content for c in out.choices]
    assert len(set(texts)) > 1, "seeded choices sample differently"

    stream = chat(client, n=3, temperature=1.0, seed=5, max_tokens=8, stream=True,
                  stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    choices, usage = collect_chat_stream(stream)
    assert sorted(choices) == [0, 1, 2]
    assert all(c["finish_reason"] == "length" and c["role"] == "assistant"
               for c in choices.values())
    assert usage.completion_tokens == 24

    # completions: several prompts times n, indexes prompt * n + choice
    comp = client.completions.create(model=MODEL, prompt=["one", "two"], n=2, max_tokens=4,
                                     temperature=1.0, seed=3, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in comp.choices) == [0, 1, 2, 3]
    assert comp.usage.completion_tokens == 16


def test_stop_strings(client):
    args = dict(model=MODEL, prompt="Once upon a time", max_tokens=40, **GREEDY)
    full = client.completions.create(**args).choices[0].text
    words = full.split()
    assert len(words) > 6, full
    stop = words[4]
    expected = full[:full.index(stop)]
    out = client.completions.create(stop=[stop, "no-such-stop-string"], **args)
    assert out.choices[0].text == expected
    assert out.choices[0].finish_reason == "stop"
    texts, finish, _ = collect_completion_stream(client.completions.create(
        stop=stop, stream=True, **args))
    assert texts == {0: expected} and finish == {0: "stop"}

    chat_full = chat(client, max_tokens=40, **GREEDY).choices[0].message.content
    chat_stop = chat_full.split()[3]
    out = chat(client, max_tokens=40, stop=chat_stop, **GREEDY)
    assert out.choices[0].message.content == chat_full[:chat_full.index(chat_stop)]
    assert out.choices[0].finish_reason == "stop"
    choices, _ = collect_chat_stream(chat(client, max_tokens=40, stop=[chat_stop], stream=True,
                                          **GREEDY))
    assert choices[0]["content"] == out.choices[0].message.content
    assert choices[0]["finish_reason"] == "stop"


def test_seed_reproducible(client):
    def sample(seed, **kwargs):
        return chat(client, temperature=1.0, seed=seed, max_tokens=16, **kwargs)

    a = sample(1234).choices[0].message.content
    assert sample(1234).choices[0].message.content == a
    choices, _ = collect_chat_stream(sample(1234, stream=True))
    assert choices[0]["content"] == a
    assert sample(4321).choices[0].message.content != a
    c1 = client.completions.create(model=MODEL, prompt="Roll a die:", max_tokens=8,
                                   temperature=1.0, seed=99)
    c2 = client.completions.create(model=MODEL, prompt="Roll a die:", max_tokens=8,
                                   temperature=1.0, seed=99)
    assert c1.choices[0].text == c2.choices[0].text


def test_concurrent_streams(server):
    """16 streams at once (chat and completions) all complete, and batching changes no greedy
    token: each equals the same request run alone."""
    prompts = [f"Request number {i}: tell me something." for i in range(4)]
    client = server.client()
    alone = [chat(client, messages=[{"role": "user", "content": p}], max_tokens=16,
                  **GREEDY).choices[0].message.content for p in prompts]

    async def one(aclient, i):
        if i % 4 == 3:  # a quarter are plain completions
            stream = await aclient.completions.create(
                model=MODEL, prompt=prompts[i % 4], max_tokens=16, stream=True,
                stream_options={"include_usage": True}, **GREEDY)
            text, finish, usage = "", None, None
            async for chunk in stream:
                usage = chunk.usage or usage
                for c in chunk.choices:
                    text += c.text
                    finish = c.finish_reason or finish
            return "completion", i, text, finish, usage
        stream = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompts[i % 4]}], max_tokens=16,
            stream=True, stream_options={"include_usage": True}, **GREEDY)
        text, finish, usage = "", None, None
        async for chunk in stream:
            usage = chunk.usage or usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        return "chat", i, text, finish, usage

    async def main():
        async with server.async_client() as aclient:
            return await asyncio.wait_for(asyncio.gather(*[one(aclient, i) for i in range(16)]),
                                          timeout=60)

    results = asyncio.run(main())
    assert len(results) == 16
    for kind, i, text, finish, usage in results:
        assert finish == "length", (kind, i)
        assert usage.completion_tokens == 16, (kind, i)
        if kind == "chat":
            assert text == alone[i % 4], i
        else:
            assert text
    server.wait_idle()


# --------------------------------------------------------------------------- errors

def test_validation_error_names_field(server, client, http):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, temperature=5.0)
    assert e.value.status_code == 400 and e.value.param == "temperature"
    assert "temperature" in e.value.message
    error = assert_error_body(http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HELLO, "temperature": 5}), 400, param="temperature",
        mentions=["temperature"])
    assert error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", top_p=0)
    assert e.value.param == "top_p"
    assert_still_serving(server)


def test_malformed_json(server, http):
    for route in ("/v1/chat/completions", "/v1/completions"):
        for body in (b'{"model": "tiny-llama", "messages": [', b"{'single': 'quotes'}"):
            r = http.post(route, content=body, headers={"content-type": "application/json"})
            assert_error_body(r, 400, param=None, mentions=["not valid JSON"])
        r = http.post(route, content=b"[1, 2]", headers={"content-type": "application/json"})
        assert_error_body(r, 400)  # JSON, but not an object
    assert_still_serving(server)


@pytest.mark.parametrize("route, body, param", [
    ("/v1/chat/completions", {"messages": HELLO, "max_tokens": "many"}, "max_tokens"),
    ("/v1/chat/completions", {"messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"messages": HELLO, "n": [2]}, "n"),
    ("/v1/chat/completions", {"max_tokens": 3}, "messages"),  # missing
    ("/v1/completions", {"prompt": {"text": "x"}}, "prompt"),
    ("/v1/completions", {"prompt": "x", "stream": "sometimes"}, "stream"),
])
def test_wrong_field_type(server, http, route, body, param):
    assert_error_body(http.post(route, json={"model": MODEL, **body}), 400, param=param,
                      mentions=[param])
    assert_still_serving(server)


def test_unknown_model(server, client):
    with pytest.raises(openai.NotFoundError) as e:
        chat(client, model="gpt-17")
    assert e.value.status_code == 404 and e.value.code == "model_not_found"
    assert "gpt-17" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-17", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-17", messages=HELLO, stream=True)
    assert_still_serving(server)


def test_api_key(auth_server):
    url, key = auth_server.url, auth_server.api_key
    routes = [("GET", "/v1/models", None),
              ("POST", "/v1/chat/completions", {"model": MODEL, "messages": HELLO,
                                                "max_tokens": 1}),
              ("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 1})]
    for method, route, body in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            r = httpx.request(method, url + route, json=body, headers=headers)
            assert_error_body(r, 401, code="invalid_api_key")
        ok = httpx.request(method, url + route, json=body,
                           headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200, ok.text
    bad = auth_server.client(api_key="wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        chat(bad)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model=MODEL, prompt="x", stream=True)
    # the right key works through the client; /health and /version stay open
    assert chat(auth_server.client(), max_tokens=2).choices[0].message.content is not None
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/version").status_code == 200


def test_prompt_longer_than_context(server, client, http):
    long_text = "tool calling " * 400  # ~800 tokens > 512
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, messages=[{"role": "user", "content": long_text}])
    assert e.value.code == "context_length_exceeded" and "512" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=long_text, max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:  # prompt fits, prompt + max_tokens does not
        chat(client, max_tokens=500)
    assert e.value.code == "context_length_exceeded"
    assert_error_body(http.post("/v1/completions", json={
        "model": MODEL, "prompt": long_text, "max_tokens": 4, "stream": True}), 400,
        code="context_length_exceeded", param="prompt")
    assert_still_serving(server)


def test_oversized_body(server, client, http):
    huge = "x" * (MAX_BODY_BYTES + 1024)
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": huge})
    assert_error_body(r, 413)

    def chunked():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"model": "tiny-llama", "max_tokens": 1, "prompt": "'
        for _ in range(MAX_BODY_BYTES // 2**20 + 1):
            yield b"y" * 2**20
        yield b'"}'

    r = http.post("/v1/completions", content=chunked(),
                  headers={"content-type": "application/json"})
    assert_error_body(r, 413)
    with pytest.raises(openai.APIStatusError) as e:
        chat(client, messages=[{"role": "user", "content": huge}])
    assert e.value.status_code == 413
    assert_still_serving(server)


@pytest.mark.parametrize("extra, mentions", [
    ({"tools": TOOLS, "tool_choice": "auto"}, ["--enable-auto-tool-choice",
                                               "--tool-call-parser"]),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "bad", "schema": {"type": "object", "properties": {"a": {"type": "strin"}}}}}},
     ["JSON schema", "strin"]),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
     ["response_format", "required"]),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     ["nope", "get_weather"]),
    ({"tools": []}, ["tools"]),
    ({"tool_choice": "required"}, ["tools"]),
])
def test_tool_choice_errors(server, client, http, extra, mentions):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, **extra)
    assert all(m in e.value.message for m in mentions), e.value.message
    assert_error_body(http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": HELLO, **extra}), 400, mentions=mentions)
    assert_still_serving(server)


def test_tools_without_auto_tool_choice_only_shown(client):
    """Tools with no explicit tool_choice and no --enable-auto-tool-choice: the model sees them,
    the server parses nothing (as vLLM does)."""
    out = chat(client, tools=TOOLS, **GREEDY)
    assert out.choices[0].finish_reason == "length" and not out.choices[0].message.tool_calls


# --------------------------------------------------------------------------- disconnects

def _open_and_drop(server, route: str, body: dict, chunks: int = 3) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as h:
        with h.stream("POST", route, json=body) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                if seen >= chunks:
                    break
            assert not server.idle(), "the request should still be running"
    # leaving the blocks closes the connection mid-stream


@pytest.mark.parametrize("route, body", [
    ("/v1/chat/completions", {"messages": HELLO, "n": 2}),
    ("/v1/completions", {"prompt": ["first prompt", "second prompt"]}),
])
def test_disconnect_mid_stream_frees_kv(server, route, body):
    server.wait_idle()
    before = scrape(server.url)
    _open_and_drop(server, route, {"model": MODEL, "stream": True, "max_tokens": 450,
                                   "ignore_eos": True, "temperature": 0, **body})
    server.wait_idle(timeout=10)  # every block back, the request gone
    assert_aborted_not_finished(server, before)
    assert_still_serving(server)


def test_disconnect_non_streamed_frees_kv(server):
    server.wait_idle()
    before = scrape(server.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", timeout=0.3, json={
            "model": MODEL, "messages": HELLO, "max_tokens": 450, "ignore_eos": True})
    server.wait_idle(timeout=10)
    assert_aborted_not_finished(server, before)
    assert_still_serving(server)


def assert_aborted_not_finished(server, before: dict) -> None:
    """The engine stopped the abandoned request: it did not run on to its 450th token (which
    would finish it with "length" and count it as a success)."""
    after = scrape(server.url)
    name = "callm:request_success_total"
    assert metric(after, name, finished_reason="length") == \
        metric(before, name, finished_reason="length")


# --------------------------------------------------------------------------- metrics

def scrape(url: str) -> dict:
    text = httpx.get(f"{url}/metrics").text
    return {s.name + json.dumps(dict(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    total = 0.0
    for key, value in samples.items():
        sample_name, _, raw = key.partition("{")
        got = json.loads("{" + raw)
        if sample_name == name and all(got.get(k) == v for k, v in labels.items()):
            total += value
    return total


def test_metrics_move_after_traffic(server, client):
    server.wait_idle()
    before = scrape(server.url)
    assert metric(before, "callm:num_requests_running") == 0
    assert metric(before, "callm:kv_cache_usage_perc") == 0.0
    chat(client, max_tokens=5, **GREEDY)
    client.completions.create(model=MODEL, prompt="metrics", max_tokens=3, **GREEDY)
    list(chat(client, max_tokens=4, stream=True, **GREEDY))
    after = scrape(server.url)

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("callm:generation_tokens_total") == 12
    assert delta("callm:prompt_tokens_total") > 0
    assert delta("callm:request_success_total", finished_reason="length") == 3
    assert delta("callm:time_to_first_token_seconds_count") == 3
    assert delta("callm:e2e_request_latency_seconds_count") == 3
    assert delta("callm:inter_token_latency_seconds_count") > 0
    assert metric(after, "callm:prefix_cache_queries_total") > 0
    for name in ("callm:num_requests_waiting", "callm:prefix_cache_hit_rate"):
        assert any(k.startswith(name + "{") for k in after), name


# --------------------------------------------------------------------------- tool-parser plugin

ECHO_TOOLS = [{"type": "function", "function": {
    "name": "echo", "description": "Repeat a text",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}}]


def test_plugin_tool_call_round_trip(plugin_server):
    client = plugin_server
    args = dict(model=MODEL, messages=HELLO, tools=ECHO_TOOLS, max_tokens=16, temperature=0)
    # The tiny model never ends on its own, and an output cut at max_tokens is reported as
    # "length" even when it holds calls: end it with a stop string taken from its own output.
    unstopped = client.chat.completions.create(tool_choice="none", **args)
    args["stop"] = unstopped.choices[0].message.content.split()[4]
    plain = client.chat.completions.create(tool_choice="none", **args)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason == "stop"

    whole = client.chat.completions.create(**args)  # tool_choice defaults to auto
    [choice] = whole.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "echo"
    assert json.loads(call.function.arguments) == {"text": text}

    choices, _ = collect_chat_stream(client.chat.completions.create(stream=True, **args))
    streamed = choices[0]
    assert streamed["finish_reason"] == "tool_calls"
    assert streamed["content"] == ""
    assert list(streamed["tool_calls"]) == [0]
    call0 = streamed["tool_calls"][0]
    assert call0["id"] == "call_echo0" and call0["name"] == "echo"
    assert json.loads(call0["arguments"]) == {"text": text}

    # a follow-up turn that carries the call and its result is accepted
    follow = client.chat.completions.create(
        model=MODEL, tools=ECHO_TOOLS, max_tokens=4, temperature=0, messages=HELLO + [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": text}])
    assert follow.choices[0].finish_reason == "length"  # 4 tokens, no stop string
    assert [c.function.name for c in follow.choices[0].message.tool_calls] == ["echo"]


# --------------------------------------------------------------------------- the command line

@pytest.fixture(scope="module")
def startup_errors(tmp_path_factory, run_cli):
    """Run the failing `callm serve` invocations concurrently (each pays Python + torch start-up);
    the model path does not exist, so an error about the flags proves the flags were checked
    before any model loading."""
    folder = tmp_path_factory.mktemp("plugins")
    raising = folder / "raising_plugin.py"
    raising.write_text("import os\n\nraise RuntimeError('plugin exploded')\n")
    syntax = folder / "syntax_plugin.py"
    syntax.write_text("def broken(:\n    pass\n")
    missing_model = str(folder / "no-such-model")
    cases = {
        "auto_without_parser": ["--enable-auto-tool-choice"],
        "auto_parser": ["--enable-auto-tool-choice", "--tool-call-parser", "auto"],
        "unknown_parser": ["--enable-auto-tool-choice", "--tool-call-parser", "nope_parser"],
        "raising_plugin": ["--tool-parser-plugin", str(raising)],
        "syntax_plugin": ["--tool-parser-plugin", str(syntax)],
        "missing_plugin": ["--tool-parser-plugin", str(folder / "absent.py")],
        "unknown_reasoning_parser": ["--reasoning-parser", "nope_reasoning"],
        "missing_reasoning_plugin": ["--reasoning-parser-plugin", str(folder / "gone.py")],
    }

    commands = {name: ["serve", missing_model, "--port", "1", *flags]
                for name, flags in cases.items()}
    commands["parsers"] = ["parsers", "--tool-parser-plugin", "examples/tool_parser_plugin.py"]
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {name: pool.submit(run_cli, *args) for name, args in commands.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("case", ["auto_without_parser", "auto_parser"])
def test_auto_tool_parser_flags_accepted(startup_errors, case):
    """No parser named, or "auto": detected from the chat template once the model is loaded,
    so the flags pass and the missing model is what fails."""
    done, _ = startup_errors[case]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "callm: error: " in done.stderr and "no-such-model" in done.stderr, done.stderr


@pytest.mark.parametrize("case, mentions", [
    ("unknown_parser", ["nope_parser", "hermes", "pythonic", "mistral"]),
    ("raising_plugin", ["raising_plugin.py:3", "plugin exploded"]),
    ("syntax_plugin", ["syntax_plugin.py:1", "SyntaxError"]),
    ("missing_plugin", ["absent.py", "does not exist"]),
    ("unknown_reasoning_parser", ["unknown reasoning parser 'nope_reasoning'", "qwen3",
                                  "deepseek_r1", "gpt-oss"]),
    ("missing_reasoning_plugin", ["gone.py", "does not exist"]),
])
def test_startup_errors(startup_errors, case, mentions):
    done, seconds = startup_errors[case]
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("callm: error: "), done.stderr
    assert all(m in lines[0] for m in mentions), lines[0]
    assert "no-such-model" not in done.stderr  # failed on the flags, before the model
    assert seconds < 60


def test_example_plugin_listed(startup_errors):
    done, _ = startup_errors["parsers"]
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    assert "functioncall" in names and "hermes" in names


def test_parsers_lists_reasoning_parsers(startup_errors):
    done, _ = startup_errors["parsers"]
    tools, reasoning = done.stdout.split("reasoning parsers (--reasoning-parser):")
    names = reasoning.split()
    assert {"qwen3", "deepseek_r1", "gpt-oss", "glm45"} <= set(names)
    assert "qwen3" not in tools.split() and "hermes" not in names


# --------------------------------------------------------------------------- the real model

WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def _calls(tool_calls):
    return [(c.function.name, json.loads(c.function.arguments)) for c in tool_calls or []]


def test_real_model_tools_streamed_equals_whole(smollm):
    model = smollm.models.list().data[0].id
    assert model == "smollm2-135m-instruct"
    args = dict(model=model, tools=WEATHER_TOOLS, temperature=0, max_tokens=40,
                messages=[{"role": "user", "content": "What is the capital of France?"}])
    whole = smollm.chat.completions.create(**args)
    message = whole.choices[0].message
    assert "Paris" in (message.content or "") or _calls(message.tool_calls), message
    choices, usage = collect_chat_stream(smollm.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **args))
    streamed = choices[0]
    assert streamed["content"] == (message.content or "")
    assert [(c["name"], json.loads(c["arguments"])) for c in streamed["tool_calls"].values()] \
        == _calls(message.tool_calls)
    assert streamed["finish_reason"] == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_real_model_multi_turn_with_tool_result(smollm):
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": json.dumps({"temperature_c": 21, "sky": "sunny"})},
    ]
    out = smollm.chat.completions.with_raw_response.create(
        model="smollm2-135m-instruct", messages=messages, tools=WEATHER_TOOLS, temperature=0,
        max_tokens=32)
    assert out.status_code == 200
    parsed = out.parse()
    assert parsed.choices[0].message.content or parsed.choices[0].message.tool_calls
