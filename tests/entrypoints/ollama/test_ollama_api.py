"""Ollama's API on `callm serve` with the real `ollama` client (and httpx for what the client
hides): liveness, list / show / ps, chat and generate whole and streamed (NDJSON), counts and
durations, `format`, `options`, seeds, logprobs, load requests, bad input, the API key."""

import json
import re
from datetime import datetime, timezone

import httpx
import ollama
import pytest

from conftest import API_KEY, MODEL, helpers

from callm.entrypoints import chat as chat_module

HELLO = [{"role": "user", "content": "Hello there"}]
GREEDY = {"temperature": 0, "num_predict": 12}
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def assert_done(reply: dict, eval_count: int | None = None, reason: str = "length") -> None:
    """The last reply: done, why, and integer counts and durations."""
    assert reply["done"] is True and reply["done_reason"] == reason, reply
    for key in (*DURATIONS, "prompt_eval_count", "eval_count"):
        assert isinstance(reply[key], int) and reply[key] >= 0, (key, reply)
    assert reply["prompt_eval_count"] > 0 and reply["total_duration"] > 0
    if eval_count is not None:
        assert reply["eval_count"] == eval_count
    assert_time(reply["created_at"])


def assert_time(text: str) -> None:
    assert text.endswith("Z"), text
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 120


def assert_error(r: httpx.Response, status: int, *mentions: str) -> str:
    """Ollama's error body: {"error": "<string>"} and nothing else."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    for word in mentions:
        assert word in body["error"], body
    return body["error"]


def ndjson(http, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


@pytest.fixture
def client(hermes_server) -> ollama.Client:
    return hermes_server.client()


@pytest.fixture
def http(hermes_server):
    with hermes_server.http() as c:
        yield c


# --------------------------------------------------------------------------- models, liveness

def test_liveness_and_version(http):
    r = http.get("/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    head = http.head("/")
    assert head.status_code == 200 and head.content == b""
    version = http.get("/api/version").json()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version["version"])


def test_list_show_ps(hermes_server, thinking_server, plain_server, client):
    [listed] = client.list().models
    assert listed.model == f"{MODEL}:latest"
    assert listed.size > 0 and re.fullmatch(r"[0-9a-f]{64}", listed.digest)
    details = listed.details
    assert (details.format, details.family, details.families) == ("safetensors", "llama",
                                                                    ["llama"])
    assert details.parameter_size.endswith("M") and details.quantization_level == "F32"
    assert listed.modified_at.tzinfo is not None

    for name in (MODEL, f"{MODEL}:latest"):
        shown = client.show(name)
        assert shown.modelinfo["general.architecture"] == "llama"
        assert shown.modelinfo["llama.context_length"] == 1024
        assert shown.modelinfo["general.parameter_count"] > 10**6
        assert shown.capabilities == ["completion", "tools"]
        assert "<|im_start|>" in shown.template and shown.details == details
    assert thinking_server.client().show(MODEL).capabilities == ["completion", "tools",
                                                                 "thinking"]
    assert plain_server.client().show(MODEL).capabilities == ["completion"]

    [running] = client.ps().models
    assert running.model == f"{MODEL}:latest" and running.context_length == 512
    assert running.expires_at > datetime.now(timezone.utc) and running.size == listed.size

    with pytest.raises(ollama.ResponseError) as e:
        client.show("llama3.2")
    assert e.value.status_code == 404 and "not found" in e.value.error


# --------------------------------------------------------------------------- chat, generate

def test_chat_whole_and_streamed(client, http):
    whole = client.chat(MODEL, messages=HELLO, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.message.thinking is None and not whole.message.tool_calls
    body = {"model": MODEL, "messages": HELLO, "options": GREEDY}
    raw = http.post("/api/chat", json={**body, "stream": False}).json()
    assert raw["model"] == MODEL and raw["message"]["content"] == whole.message.content
    assert_done(raw, 12)
    lines = ndjson(http, "/api/chat", body)  # streaming is the default
    *pieces, last = lines
    assert pieces and all(p["done"] is False and "done_reason" not in p for p in pieces)
    assert "".join(p["message"]["content"] for p in pieces) == whole.message.content
    assert_done(last, 12)
    assert last["message"] == {"role": "assistant", "content": ""}
    assert last["prompt_eval_count"] == raw["prompt_eval_count"]
    # the client reads the same stream
    chunks = list(client.chat(MODEL, messages=HELLO, options=GREEDY, stream=True))
    assert "".join(c.message.content for c in chunks) == whole.message.content
    assert chunks[-1].done and chunks[-1].eval_count == 12


def test_generate_whole_streamed_context_and_raw(client, http):
    whole = client.generate(MODEL, "Once upon a time", options=GREEDY)
    assert whole.response and whole.done_reason == "length" and whole.eval_count == 12
    assert whole.context and len(whole.context) == whole.prompt_eval_count + 12
    streamed = list(client.generate(MODEL, "Once upon a time", options=GREEDY, stream=True))
    assert "".join(c.response for c in streamed) == whole.response
    assert streamed[-1].context == whole.context
    # a follow-up with the context continues the conversation
    more = client.generate(MODEL, "And then?", context=whole.context, options=GREEDY)
    alone = client.generate(MODEL, "And then?", options=GREEDY)
    assert more.prompt_eval_count == len(whole.context) + alone.prompt_eval_count
    # a system prompt goes through the template; raw skips it
    system = client.generate(MODEL, "Once upon a time", system="Be brief.", options=GREEDY)
    assert system.prompt_eval_count != whole.prompt_eval_count
    raw = client.generate(MODEL, "Once upon a time", raw=True, options=GREEDY)
    assert raw.prompt_eval_count < whole.prompt_eval_count and raw.response
    assert_done(http.post("/api/generate", json={"model": MODEL, "prompt": "Hi",
                                                 "stream": False, "options": GREEDY}).json(), 12)


def test_load_and_unload_requests(client, http):
    """No prompt / no messages: Ollama's way to (un)load a model."""
    assert client.generate(MODEL).done_reason == "load"
    assert client.chat(MODEL, messages=[]).done_reason == "load"
    assert client.generate(MODEL, keep_alive=0).done_reason == "unload"
    r = http.post("/api/chat", json={"model": MODEL, "keep_alive": "5m"}).json()
    assert r["done"] and r["done_reason"] == "load" and r["message"]["content"] == ""


def test_seeds_give_identical_output(client):
    args = dict(messages=HELLO, options={"temperature": 1.0, "num_predict": 16, "seed": 42})
    a, b = client.chat(MODEL, **args), client.chat(MODEL, **args)
    assert a.message.content == b.message.content
    other = client.chat(MODEL, messages=HELLO,
                        options={"temperature": 1.0, "num_predict": 16, "seed": 43})
    assert other.message.content != a.message.content
    g1 = client.generate(MODEL, "Say", options={"temperature": 1.0, "num_predict": 8, "seed": 7})
    g2 = client.generate(MODEL, "Say", options={"temperature": 1.0, "num_predict": 8, "seed": 7})
    assert g1.response == g2.response


def test_format_json_and_schema(client):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "age": {"type": "integer", "enum": [7, 40, 99]}},
              "required": ["name", "age"], "additionalProperties": False}
    reply = client.chat(MODEL, messages=HELLO, format=schema,
                        options={"temperature": 0, "num_predict": 60})
    value = json.loads(reply.message.content)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    generated = client.generate(MODEL, "JSON please", format=schema,
                                options={"temperature": 0, "num_predict": 60})
    assert set(json.loads(generated.response)) == {"name", "age"}
    free = client.chat(MODEL, messages=HELLO, format="json",
                       options={"temperature": 0, "num_predict": 40})
    assert free.message.content.lstrip().startswith("{")
    if free.done_reason == "stop":
        assert isinstance(json.loads(free.message.content), dict)


def test_options(client):
    base = client.chat(MODEL, messages=HELLO, options={"temperature": 0, "num_predict": 20})
    # stop: the text ends before the stop string
    word = base.message.content.split()[3]
    stopped = client.chat(MODEL, messages=HELLO,
                          options={"temperature": 0, "num_predict": 20, "stop": [word]})
    assert stopped.done_reason == "stop" and word not in stopped.message.content
    assert base.message.content.startswith(stopped.message.content)
    # num_ctx caps prompt + output; -1 / -2 num_predict run to the end of that window
    for predict in (-1, -2, 500):
        capped = client.chat(MODEL, messages=HELLO,
                             options={"temperature": 0, "num_ctx": base.prompt_eval_count + 5,
                                      "num_predict": predict})
        assert capped.done_reason == "length" and capped.eval_count == 5
    # the other samplers, and options callm does not use, are accepted
    tuned = client.chat(MODEL, messages=HELLO, options={
        "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1,
        "presence_penalty": 0.5, "frequency_penalty": 0.5, "seed": 1, "num_predict": 4,
        "num_gpu": 1, "num_thread": 2, "mirostat": 0, "repeat_last_n": 64, "use_mmap": True})
    assert tuned.eval_count == 4


def test_logprobs(client):
    reply = client.chat(MODEL, messages=HELLO, logprobs=True, top_logprobs=2,
                        options={"temperature": 0, "num_predict": 5})
    assert len(reply.logprobs) == 5
    assert "".join(lp.token for lp in reply.logprobs) == reply.message.content
    for lp in reply.logprobs:
        assert lp.logprob <= 0 and len(lp.top_logprobs) == 2
        assert lp.top_logprobs[0].logprob >= lp.top_logprobs[1].logprob
    streamed = list(client.chat(MODEL, messages=HELLO, logprobs=True, stream=True,
                                options={"temperature": 0, "num_predict": 5}))
    assert [lp.token for c in streamed for lp in c.logprobs or []] == [
        lp.token for lp in reply.logprobs]


# --------------------------------------------------------------------------- bad input

def test_bad_input_is_an_ollama_error(hermes_server, plain_server, http):
    post = lambda body, path="/api/chat": http.post(path, json=body)  # noqa: E731
    ok = {"model": MODEL, "messages": HELLO, "stream": False}
    assert_error(http.post("/api/chat", content=b"{not json"), 400, "JSON")
    assert_error(http.post("/api/chat"), 400, "missing request body")
    assert_error(http.post("/api/chat", content=b"[1]"), 400, "object")
    assert_error(post({"messages": HELLO}), 400, "model is required")
    assert_error(post({**ok, "model": "llama3.2"}), 404, "llama3.2", "not found")
    assert_error(post({**ok, "messages": "hi"}), 400, "messages")
    assert_error(post({**ok, "messages": [{"role": "robot", "content": "x"}]}), 400,
                 "messages[0].role")
    assert_error(post({**ok, "messages": [{"role": "user", "content": "x",
                                           "images": ["aGVsbG8="]}]}), 400, "images")
    assert_error(post({"model": MODEL, "prompt": "x", "images": ["aGVsbG8="]},
                      "/api/generate"), 400, "images")
    assert_error(post({"model": MODEL, "prompt": "x", "suffix": "y"}, "/api/generate"), 400,
                 "suffix")
    assert_error(post({"model": MODEL, "prompt": "x", "template": "{{ .Prompt }}"},
                      "/api/generate"), 400, "template")
    assert_error(post({"model": MODEL, "prompt": "x", "context": [-1]}, "/api/generate"), 400,
                 "context")
    assert_error(post({**ok, "options": {"temperature": "hot"}}), 400, "options.temperature")
    assert_error(post({**ok, "options": {"temperature": 5}}), 400, "options.temperature")
    assert_error(post({**ok, "options": {"num_ctx": 4}}), 400, "num_ctx")
    assert_error(post({**ok, "format": "xml"}), 400, "format")
    assert_error(post({**ok, "format": {"type": "object", "properties": {"a": {"$ref": "#/x"}}}}),
                 400, "format")
    assert_error(post({**ok, "think": "extreme"}), 400, "think")
    assert_error(post({**ok, "think": True}), 400, "does not support thinking")
    assert_error(post({**ok, "tools": [{"type": "function", "function": {}}]}), 400,
                 "tools[0].function.name")
    assert_error(post({**ok, "messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": "[1, 2"}}]}]}), 400, "arguments")
    assert_error(http.get("/api/chat"), 405)
    assert_error(http.get("/api/nope"), 404)
    assert_error(http.post("/api/show", json={"model": "nope"}), 404, "not found")
    # null is absent, as in Ollama: this streams, with the default seed
    lines = ndjson(http, "/api/chat", {"model": MODEL, "messages": HELLO, "stream": None,
                                       "format": None, "options": {"seed": None,
                                                                   "num_predict": 2}})
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 2
    # think=false on a model that cannot think is fine, as with Ollama
    assert post({**ok, "think": False, "options": {"num_predict": 2}}).status_code == 200
    # the client raises ResponseError with the status; the server keeps serving
    client = hermes_server.client()
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(MODEL, messages=HELLO, think=True)
    assert e.value.status_code == 400 and "does not support thinking" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        list(client.chat("nope", messages=HELLO, stream=True))
    assert e.value.status_code == 404
    assert client.chat(MODEL, messages=HELLO, options={"num_predict": 2}).done


def test_mid_stream_failure_is_an_error_line(hermes_server, client, monkeypatch):
    """Once streaming started, a failure goes out as an {"error": ...} line (the client raises
    it); the request leaves the engine."""
    def broken(self, text, token_ids=()):
        raise RuntimeError("the reader broke")

    monkeypatch.setattr(chat_module.ChoiceReader, "feed", broken)
    with hermes_server.http() as http:
        lines = ndjson(http, "/api/chat", {"model": MODEL, "messages": HELLO})
    assert lines == [{"error": "the reader broke"}]
    with pytest.raises(ollama.ResponseError) as e:
        list(client.chat(MODEL, messages=HELLO, stream=True))
    assert "the reader broke" in e.value.error
    monkeypatch.undo()
    import time

    deadline = time.monotonic() + 10
    while not hermes_server.idle() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hermes_server.idle()


def test_api_key(auth_server):
    url = auth_server.url
    assert httpx.get(f"{url}/").text == "Ollama is running"
    assert httpx.head(f"{url}/").status_code == 200
    assert httpx.get(f"{url}/api/version").status_code == 200
    for method, path in (("GET", "/api/tags"), ("GET", "/api/ps"), ("POST", "/api/chat"),
                         ("POST", "/api/generate"), ("POST", "/api/show")):
        assert_error(httpx.request(method, f"{url}{path}", json={"model": MODEL}), 401)
        assert_error(httpx.request(method, f"{url}{path}", json={"model": MODEL},
                                   headers={"Authorization": "Bearer wrong"}), 401)
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=url).list()
    assert e.value.status_code == 401
    client = auth_server.client()  # sends the key from headers=
    assert client.list().models and client.show(MODEL).capabilities
    assert client.chat(MODEL, messages=HELLO, options={"num_predict": 2}).done
    # /v1 keeps OpenAI's error body
    r = httpx.get(f"{url}/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{url}/v1/models",
                     headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_callm_serve_answers_both_apis(tiny_llama_dir):
    """`callm serve` (what `make run` runs) answers Ollama's API and OpenAI's on one port,
    both behind --api-key."""
    import openai

    flags = ("--dtype", "float32", "--kv-cache-memory", "32M", "--max-model-len", "512",
             "--served-model-name", MODEL, "--tool-call-parser", "hermes", "--api-key", API_KEY)
    with helpers.cli_server(str(tiny_llama_dir), *flags) as url:
        assert httpx.get(f"{url}/").text == "Ollama is running"
        client = ollama.Client(host=url, headers={"Authorization": f"Bearer {API_KEY}"})
        assert client.chat(MODEL, messages=HELLO, options={"num_predict": 3}).eval_count == 3
        assert client.show(MODEL).capabilities == ["completion", "tools"]
        with pytest.raises(ollama.ResponseError):
            ollama.Client(host=url).list()
        models = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY).models.list()
        assert [m.id for m in models.data] == [MODEL]
