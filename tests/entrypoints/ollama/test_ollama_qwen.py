"""The model that calls tools by itself (Qwen2.5-Coder-0.5B, hermes parser) behind Ollama's API,
with no `format`: asked a sum, it calls the Python function the client turned into a tool,
whole and streamed alike; the tool result goes back by tool_name and the next turn is served.
(This 0.5B model then tends to call again rather than answer: the check is the wire, not its
arithmetic.)"""

import importlib.util
from pathlib import Path

import ollama
import pytest

from conftest import build_app, build_context, make_engine, serve_app

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ollama_agent.py"
MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def qwen():
    engine = make_engine(MODEL, dtype="bfloat16", max_model_len=2048,
                         kv_cache_memory=128 * 2**20)
    try:
        with serve_app(build_app(build_context(engine, None, False, "hermes", None))) as url:
            yield ollama.Client(host=url, timeout=300)
    finally:
        engine.shutdown()


@pytest.mark.slow
def test_qwen_calls_the_python_function(qwen):
    spec = importlib.util.spec_from_file_location("ollama_agent", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tools = list(example.TOOLS.values())
    messages = [{"role": "user", "content": "What is 3 plus 1?"}]
    options = {"temperature": 0, "num_predict": 64}
    response = qwen.chat(MODEL, messages=messages, tools=tools, options=options)
    calls = [(c.function.name, dict(c.function.arguments)) for c in response.message.tool_calls]
    assert calls == [("add_two_numbers", {"a": 3, "b": 1})]
    assert response.done_reason == "stop" and not response.message.content
    _, content, streamed = example.streamed(qwen, MODEL, "What is 3 plus 1?")
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == calls
    assert content == ""
    messages.append(response.message)
    messages.append({"role": "tool", "tool_name": "add_two_numbers",
                     "content": example.run_tool(*calls[0])})
    follow_up = qwen.chat(MODEL, messages=messages, tools=tools, options=options)
    assert follow_up.done and follow_up.prompt_eval_count > response.prompt_eval_count
    for call in follow_up.message.tool_calls or []:  # whole calls only, arguments objects
        assert isinstance(call.function.arguments, dict)
