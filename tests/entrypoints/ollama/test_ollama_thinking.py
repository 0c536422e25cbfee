"""`think` on a thinking model (`thinking_server`: a Qwen3-style template whose generation prompt
opens `<think>`, the qwen3 reasoning parser, hermes): the thought goes to `message.thinking`
(`thinking` on /api/generate), never to content; think=false writes an empty thought and the
answer follows; "low" / "medium" / "high" reach the template as reasoning_effort; an earlier
turn's `thinking` goes back to the template. The random model never ends a thought by itself
(Ollama has no thinking budget), so with thinking on, everything it writes is thought."""

import json

from conftest import MODEL, calls_format

MARKUP = ("<think>", "</think>", "<tool_call>")
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
GREEDY = {"temperature": 0, "num_predict": 10}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_streaming_with_think(thinking_server):
    """The documented loop: thinking and content accumulated from the stream equal the whole
    reply; the thought is in `thinking` only."""
    client = thinking_server.client()
    whole = client.chat(MODEL, messages=ASK, think=True, options=GREEDY)
    assert whole.message.thinking and not whole.message.content
    assert not any(m in whole.message.thinking for m in MARKUP)
    assert whole.done_reason == "length" and whole.eval_count == 10
    thinking, content, chunks = "", "", list(client.chat(MODEL, messages=ASK, think=True,
                                                         options=GREEDY, stream=True))
    for chunk in chunks:
        thinking += chunk.message.thinking or ""
        content += chunk.message.content or ""
    assert thinking == whole.message.thinking and content == ""
    assert sum(1 for c in chunks if c.message.thinking) > 1  # in pieces
    # unset: the model's default (this template thinks), still split
    default = client.chat(MODEL, messages=ASK, options=GREEDY)
    assert default.message.thinking == whole.message.thinking


def test_think_false_answers_without_a_thought(thinking_server):
    client = thinking_server.client()
    on = client.chat(MODEL, messages=ASK, think=True, options=GREEDY)
    off = client.chat(MODEL, messages=ASK, think=False, options=GREEDY)
    assert off.message.thinking is None and off.message.content
    assert not any(m in off.message.content for m in MARKUP)
    # the template wrote the empty thought into the prompt
    assert off.prompt_eval_count > on.prompt_eval_count


def test_think_levels_reach_the_template(thinking_server):
    client = thinking_server.client()
    on = client.chat(MODEL, messages=ASK, think=True, options=GREEDY)
    for level in ("low", "medium", "high"):
        leveled = client.chat(MODEL, messages=ASK, think=level, options=GREEDY)
        assert leveled.message.thinking  # thinking on
        # "Reasoning effort: <level>" became the system turn
        assert leveled.prompt_eval_count > on.prompt_eval_count


def test_tools_with_think(thinking_server):
    """With thinking on, `format` holds from the end of the thought, which this model never
    reaches: no call, the thought cut off by num_predict. With thinking off the call comes
    at once (through the hermes parser's bare call object)."""
    client = thinking_server.client()
    call = calls_format(("get_weather", {"city": "Paris"}))["prefixItems"][0]
    thinking = list(client.chat(MODEL, messages=ASK, tools=[WEATHER], format=call, think=True,
                                options={"temperature": 0, "num_predict": 12}, stream=True))
    assert "".join(c.message.thinking or "" for c in thinking)
    assert not any(c.message.tool_calls for c in thinking)
    assert thinking[-1].done_reason == "length"
    off = client.chat(MODEL, messages=ASK, tools=[WEATHER], format=call, think=False,
                      options={"temperature": 0, "num_predict": 40})
    assert [(c.function.name, dict(c.function.arguments)) for c in off.message.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    assert off.message.thinking is None and off.done_reason == "stop"


def test_generate_with_think(thinking_server):
    client = thinking_server.client()
    whole = client.generate(MODEL, "Why is the sky blue?", think=True, options=GREEDY)
    assert whole.thinking and not whole.response
    streamed = list(client.generate(MODEL, "Why is the sky blue?", think=True, options=GREEDY,
                                    stream=True))
    assert "".join(c.thinking or "" for c in streamed) == whole.thinking
    off = client.generate(MODEL, "Why is the sky blue?", think=False, options=GREEDY)
    assert off.response and off.thinking is None


def test_earlier_thinking_goes_back_to_the_template(thinking_server):
    client = thinking_server.client()
    turns = [*ASK, {"role": "assistant", "content": "Sunny."},
             {"role": "user", "content": "And tomorrow?"}]
    plain = client.chat(MODEL, messages=turns, think=True, options=GREEDY)
    turns[1] = {**turns[1], "thinking": "The user wants the weather in Paris today."}
    thought = client.chat(MODEL, messages=turns, think=True, options=GREEDY)
    assert thought.prompt_eval_count > plain.prompt_eval_count


def test_thinking_on_the_wire(thinking_server):
    with thinking_server.http() as http:
        r = http.post("/api/chat", json={"model": MODEL, "messages": ASK, "think": "high",
                                         "stream": False, "options": GREEDY})
        assert r.status_code == 200, r.text
        message = r.json()["message"]
        assert set(message) == {"role", "content", "thinking"} and message["content"] == ""
        with http.stream("POST", "/api/chat", json={"model": MODEL, "messages": ASK,
                                                    "think": True, "options": GREEDY}) as s:
            lines = [json.loads(line) for line in s.iter_lines() if line]
        assert all("thinking" in line["message"] for line in lines[:-1])
        assert lines[-1]["done"] and "thinking" not in lines[-1]["message"]
