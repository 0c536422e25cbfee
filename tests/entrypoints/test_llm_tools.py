"""Offline LLM.chat with tools on real models."""

import json

import pytest

from callm import LLM, SamplingParams

WEATHER = {"type": "function", "function": {
    "name": "get_current_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}


@pytest.mark.slow
def test_qwen_calls_the_weather_tool():
    llm = LLM("qwen2.5-coder-0.5b-instruct", max_model_len=2048, kv_cache_memory=256 * 2**20)
    outputs = llm.chat([[{"role": "user", "content": "What's the weather like in Boston today?"}],
                        [{"role": "user", "content": "Write a haiku about the sea."}]],
                       SamplingParams(temperature=0, max_tokens=96), tools=[WEATHER])
    calls = outputs[0].outputs[0].tool_calls
    assert calls and calls[0].function.name == "get_current_weather"
    assert "boston" in json.loads(calls[0].function.arguments)["location"].lower()
    assert outputs[1].outputs[0].tool_calls is None and outputs[1].outputs[0].text.strip()


def test_embedded_model_chat_with_python_function_tool():
    """`LLM().chat(messages, tools=[fn])` works as the README shows: the embedded model, the
    Hermes tool template and parser chosen by themselves. (SmolLM2 rarely calls tools unasked,
    so this checks the plumbing: the tool is in the prompt and the output is parsed.)"""

    def get_current_weather(location: str, unit: str = "celsius") -> str:
        """Get the current weather.

        Args:
            location: The city.
            unit: celsius or fahrenheit.
        """
        return "sunny"

    llm = LLM(max_model_len=1024, kv_cache_memory=64 * 2**20)
    out = llm.chat([{"role": "user", "content": "What's the weather in Paris?"}],
                   SamplingParams(temperature=0, max_tokens=32), tools=[get_current_weather])
    assert len(out) == 1 and out[0].outputs[0].text
    assert "get_current_weather" in llm.tokenizer.decode(out[0].prompt_token_ids)
    assert "<tools>" in llm.tokenizer.decode(out[0].prompt_token_ids)
