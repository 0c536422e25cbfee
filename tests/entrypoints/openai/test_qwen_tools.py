"""The tool-calling test model through the real server and openai client: a weather question
gives a get_current_weather call, streamed and not (equal once accumulated), and the agent loop's
follow-up turn with the tool result gives text."""

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openai_tool_calling.py"


@pytest.mark.slow
def test_weather_call_streamed_and_whole_then_follow_up(qwen):
    spec = importlib.util.spec_from_file_location("openai_tool_calling", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = "qwen2.5-coder-0.5b-instruct"
    question = "What's the weather like in Boston today?"
    message = example.one_call(qwen, model, question)
    assert [c.function.name for c in message.tool_calls] == ["get_current_weather"]
    assert "boston" in json.loads(message.tool_calls[0].function.arguments)["location"].lower()
    content, calls = example.streamed_call(qwen, model, question)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        (c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
    assert (content or None) == message.content
    # The follow-up turn: the assistant's call and the tool's result go back through the chat
    # template. (This 0.5B model then tends to repeat its call before restating the result, so
    # the check is that it answers with text, not what else it does.)
    call = message.tool_calls[0]
    result = example.get_current_weather(**json.loads(call.function.arguments))
    follow_up = qwen.chat.completions.create(
        model=model, tools=example.TOOLS, temperature=0, max_tokens=96,
        messages=[{"role": "user", "content": question}, message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}])
    reply = follow_up.choices[0].message
    assert reply.content and "21" in reply.content
