"""Tool calling through Ollama's API with the real `ollama` client: the scenarios of Ollama's
tool-calling documentation (one call with a Python function as the tool, parallel calls, the
multi-turn agent loop, streaming), on the tiny random model made to call tools by a `format`
that describes its calls (see conftest). Raw NDJSON (httpx) where the client hides a field:
`function.index` and the ids."""

import importlib.util
import json
from pathlib import Path

import ollama
import pytest

from conftest import MODEL, call_schema, calls_format

from callm.entrypoints.chat import ChatPipeline
from callm.entrypoints.chat_utils import default_chat_template
from callm.entrypoints.ollama.protocol import Message
from callm.entrypoints.ollama.serving import _messages
from callm.entrypoints.openai.protocol import ChatCompletionRequest
from callm.tool_parsers.hermes import HermesToolParser

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
GREEDY = {"temperature": 0, "num_predict": 120}


def get_temperature(city: str) -> str:
    """Get the current temperature for a city

    Args:
      city: The name of the city

    Returns:
      The current temperature for the city
    """
    return {"New York": "22°C", "London": "15°C", "Tokyo": "18°C"}.get(city, "Unknown")


def get_conditions(city: str) -> str:
    """Get the current weather conditions for a city

    Args:
      city: The name of the city

    Returns:
      The current weather conditions for the city
    """
    return {"New York": "Partly cloudy", "London": "Rainy", "Tokyo": "Sunny"}.get(city, "Unknown")


def calls_of(message) -> list[tuple[str, dict]]:
    return [(c.function.name, dict(c.function.arguments)) for c in message.tool_calls or []]


def ndjson(http, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


# --------------------------------------------------------------------------- documented scenarios

def test_single_call_with_a_python_function_then_the_answer(xlam_server):
    """The client turns the function into a tool; the call comes back with its arguments as a
    dict; the result goes back as a `tool` message named by tool_name; the model answers."""
    client = xlam_server.client()
    messages = [{"role": "user", "content": "What is the temperature in New York?"}]
    response = client.chat(MODEL, messages=messages, tools=[get_temperature], options=GREEDY,
                           format=calls_format(("get_temperature", {"city": "New York"})))
    assert response.done and response.done_reason == "stop"
    assert calls_of(response.message) == [("get_temperature", {"city": "New York"})]
    assert response.message.content == ""
    messages.append(response.message)
    for call in response.message.tool_calls:
        result = get_temperature(**call.function.arguments)
        messages.append({"role": "tool", "tool_name": call.function.name, "content": result})
    final = client.chat(MODEL, messages=messages, tools=[get_temperature],
                        options={"num_predict": 6, "seed": 3})
    assert final.done and final.done_reason == "length"
    assert not final.message.tool_calls and final.message.content
    assert final.prompt_eval_count > response.prompt_eval_count  # the call and its result


def test_parallel_calls_each_with_its_own_index(xlam_server):
    client = xlam_server.client()
    fmt = calls_format(("get_temperature", {"city": "London"}),
                       ("get_conditions", {"city": "London"}))
    messages = [{"role": "user", "content": "Temperature and conditions in London?"}]
    response = client.chat(MODEL, messages=messages, tools=[get_temperature, get_conditions],
                           options=GREEDY, format=fmt)
    assert calls_of(response.message) == [("get_temperature", {"city": "London"}),
                                          ("get_conditions", {"city": "London"})]
    # on the wire: function.index 0, 1 and an Ollama-style id per call, streamed or not
    body = {"model": MODEL, "messages": messages, "format": fmt, "options": GREEDY,
            "tools": [{"type": "function", "function": {"name": n, "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}}
                for n in ("get_temperature", "get_conditions")]}
    with xlam_server.http() as http:
        whole = http.post("/api/chat", json={**body, "stream": False}).json()
        lines = ndjson(http, "/api/chat", body)
    for calls in (whole["message"]["tool_calls"],
                  [c for line in lines for c in line["message"].get("tool_calls", [])]):
        assert [c["function"]["index"] for c in calls] == [0, 1]
        assert [c["function"]["name"] for c in calls] == ["get_temperature", "get_conditions"]
        ids = [c["id"] for c in calls]
        assert all(i.startswith("call_") and len(i) == 13 for i in ids) and len(set(ids)) == 2


def test_agent_loop_example_with_add_and_multiply(xlam_server, capsys):
    """examples/ollama_agent.py as written; the test scripts the model's turns (add, then
    multiply, then text) by adding a `format` to each request."""
    spec = importlib.util.spec_from_file_location("ollama_agent", EXAMPLES / "ollama_agent.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    turns = iter([calls_format(("add_two_numbers", {"a": 3, "b": 1})),
                  calls_format(("multiply_two_numbers", {"a": 4, "b": 2})), None])
    seen = []

    class Scripted(ollama.Client):
        def chat(self, *args, **kwargs):
            seen.append([dict(m) if not isinstance(m, dict) else m
                         for m in kwargs["messages"]])
            return super().chat(*args, format=next(turns), **kwargs)

    answer = example.agent(Scripted(host=xlam_server.url), MODEL, "What is three plus one, "
                           "times two?")
    out = capsys.readouterr().out
    assert "tool: add_two_numbers {'a': 3, 'b': 1} -> 4" in out
    assert "tool: multiply_two_numbers {'a': 4, 'b': 2} -> 8" in out
    assert isinstance(answer, str) and f"answer: {answer}" in out
    assert len(seen) == 3
    # the third request carried both calls and both results, in order
    roles = [(m["role"], m.get("tool_name")) for m in seen[2]]
    assert roles == [("user", None), ("assistant", None), ("tool", "add_two_numbers"),
                     ("assistant", None), ("tool", "multiply_two_numbers")]
    # and main() as a user runs it (the random model answers in text at once)
    example.main(xlam_server.url, MODEL, "What is three plus one, times two?")
    out = capsys.readouterr().out
    assert "streamed:" in out and "answer:" in out


def test_streamed_calls_equal_whole(xlam_server):
    """The documented streaming loop: content in pieces, each call whole in some chunk."""
    client = xlam_server.client()
    args = dict(messages=[{"role": "user", "content": "Temperature in Tokyo?"}],
                tools=[get_temperature, get_conditions], options=GREEDY,
                format=calls_format(("get_conditions", {"city": "Tokyo"}),
                                    ("get_temperature", {"city": "Tokyo"})))
    whole = client.chat(MODEL, **args)
    content, calls, last = "", [], None
    for chunk in client.chat(MODEL, stream=True, **args):
        content += chunk.message.content or ""
        calls.extend(chunk.message.tool_calls or [])
        last = chunk
    assert last.done and last.done_reason == whole.done_reason == "stop"
    assert calls_of(whole.message) == [(c.function.name, dict(c.function.arguments))
                                       for c in calls]
    assert content == whole.message.content == ""
    assert last.eval_count == whole.eval_count and last.prompt_eval_count == whole.prompt_eval_count


@pytest.mark.parametrize("num_predict", [8, 40])
def test_a_call_cut_off_by_num_predict_never_goes_out(xlam_server, num_predict):
    """Only complete calls come back (the client rejects arguments that are not objects):
    none when the first is cut off, the first alone when the second is."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": n}} for n in ("f", "g")],
            "format": calls_format(("f", {"a": 1}), ("g", {"b": 2})),
            "options": {"temperature": 0, "num_predict": num_predict}}
    with xlam_server.http() as http:
        whole = http.post("/api/chat", json={**body, "stream": False}).json()
        lines = ndjson(http, "/api/chat", body)
    streamed = [c for line in lines for c in line["message"].get("tool_calls", [])]
    for reply in (whole, lines[-1]):
        assert reply["done"] and reply["done_reason"] == "length"
        assert reply["eval_count"] == num_predict
    names = [c["function"]["name"] for c in whole["message"].get("tool_calls", [])]
    assert names == [c["function"]["name"] for c in streamed] == (["f"] if num_predict == 40
                                                                 else [])
    assert all(c["function"]["arguments"] == {"a": 1} for c in streamed)


def test_hermes_model_bare_call_object_through_format(hermes_server):
    """The hermes parser reads a bare call object (small Qwen models drift into it): a
    `format` for one call object makes one call there; other JSON stays content."""
    client = hermes_server.client()
    messages = [{"role": "user", "content": "Conditions in London?"}]
    response = client.chat(MODEL, messages=messages, tools=[get_conditions], options=GREEDY,
                           format=call_schema("get_conditions", city="London"))
    assert calls_of(response.message) == [("get_conditions", {"city": "London"})]
    other = client.chat(MODEL, messages=messages, tools=[get_conditions], options=GREEDY,
                        format={"type": "object", "properties": {"n": {"enum": [7]}},
                                "required": ["n"], "additionalProperties": False})
    assert not other.message.tool_calls and json.loads(other.message.content) == {"n": 7}


def test_tools_on_a_model_without_a_tool_parser(plain_server):
    with pytest.raises(ollama.ResponseError) as e:
        plain_server.client().chat(MODEL, messages=[{"role": "user", "content": "x"}],
                                   tools=[get_temperature])
    assert e.value.status_code == 400 and "does not support tools" in e.value.error


# --------------------------------------------------------------------------- history in

def test_calls_sent_back_without_ids_and_results_by_tool_name(hermes_server):
    """The client drops call ids and sends results with tool_name only: calls get stable ids
    and each result the id of the call it answers (by name, else by order), so the template
    sees a consistent conversation; a given tool_call_id is kept."""
    history = [Message(role="user", content="q"),
               Message(role="assistant", content="", tool_calls=[
                   {"function": {"name": "get_temperature", "arguments": {"city": "Tokyo"}}},
                   {"function": {"name": "get_conditions", "arguments": {"city": "Tokyo"}}}]),
               Message(role="tool", tool_name="get_conditions", content="Sunny"),
               Message(role="tool", content="18°C"),
               Message(role="assistant", thinking="hmm", content="ok", tool_calls=[
                   {"id": "call_given", "function": {"name": "f", "arguments": '{"x": 1}'}}]),
               Message(role="tool", tool_call_id="call_given", content="done")]
    out = _messages(history, MODEL)
    first, second = (c["id"] for c in out[1]["tool_calls"])
    assert first != second and first.startswith("call_")
    assert out[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Tokyo"}'
    assert (out[2]["tool_call_id"], out[2]["name"]) == (second, "get_conditions")
    assert (out[3]["tool_call_id"], out[3]["name"]) == (first, "get_temperature")
    assert out[4]["reasoning_content"] == "hmm"
    assert out[5]["tool_call_id"] == "call_given" and out[5]["name"] == "f"
    assert _messages(history, MODEL) == out  # the same conversation, the same ids
    # the template renders both calls and both results
    tokenizer = hermes_server.engine.tokenizer
    pipeline = ChatPipeline(tokenizer, default_chat_template(tokenizer), HermesToolParser)
    prompt = pipeline.prepare(ChatCompletionRequest(messages=out[:4])).prompt
    assert prompt.count("<tool_call>") == 2 and '"city": "Tokyo"' in prompt
    assert "<tool_response>\nSunny\n</tool_response>" in prompt and "18°C" in prompt
    # and the server renders the same from what the client sends
    reply = hermes_server.client().chat(
        MODEL, messages=[m.model_dump(exclude_none=True) for m in history[:4]],
        options={"num_predict": 2})
    assert reply.prompt_eval_count == len(tokenizer.encode(prompt, add_special_tokens=False))
