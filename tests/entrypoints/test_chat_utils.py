"""Chat rendering with tools on the real Qwen2.5 and SmolLM2 templates; function schemas."""

import json
from enum import Enum
from typing import Literal, Optional

import jsonschema
import pytest
from real_tokenizers import qwen25_tokenizer, smollm2_tokenizer

from callm.entrypoints.chat_utils import (HERMES_TOOLS_TEMPLATE_PATH, default_chat_template,
                                          function_to_tool, render_chat)
from callm.entrypoints.openai.protocol import ChatCompletionRequest, ChatCompletionToolsParam

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}

AGENT = [
    {"role": "system", "content": "You answer weather questions."},
    {"role": "user", "content": "Weather in Paris and in Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    {"role": "tool", "tool_call_id": "call_2",
     "content": [{"type": "text", "text": "22 C,"}, {"type": "text", "text": "cloudy"}]},
    {"role": "assistant", "content": "Paris: 18 C and sunny. Rome: 22 C and cloudy."},
]


@pytest.fixture(scope="module")
def qwen():
    return qwen25_tokenizer().raw


@pytest.fixture(scope="module")
def smol():
    return smollm2_tokenizer().raw


@pytest.fixture(scope="module")
def hermes():
    return HERMES_TOOLS_TEMPLATE_PATH.read_text()


def test_default_chat_template_picks_hermes_only_where_tools_are_dropped(qwen, smol, hermes):
    assert default_chat_template(smol, "smollm2-135m-instruct") == hermes
    assert default_chat_template(qwen, "qwen2.5-coder-0.5b-instruct") is None


def test_qwen_template_lists_tools(qwen):
    def lookup(word: str) -> str:
        """Look a word up."""

    tools = [ChatCompletionToolsParam.model_validate(WEATHER), lookup]
    out = render_chat(qwen, [{"role": "user", "content": "Hi"}], tools=tools)
    block = out[out.index("<tools>\n"):out.index("\n</tools>")]
    assert block.splitlines()[1:] == [json.dumps(WEATHER), json.dumps(function_to_tool(lookup))]
    assert "<tool_call>\n{\"name\": <function-name>" in out
    assert out.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("model", ["qwen", "smol"])
def test_agent_transcript(model, request):
    tok = request.getfixturevalue(model)
    out = render_chat(tok, AGENT, tools=[WEATHER], chat_template=default_chat_template(tok))
    system = out[:out.index("<|im_end|>")]
    assert system.startswith("<|im_start|>system\nYou answer weather questions.\n\n# Tools")
    assert json.dumps(WEATHER) in system
    calls = ('<|im_start|>assistant\n'
             '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
             '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
             '<|im_end|>\n')
    results = ('<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response>\n'
               '<tool_response>\n22 C,\ncloudy\n</tool_response><|im_end|>\n')
    answer = ('<|im_start|>assistant\nParis: 18 C and sunny. Rome: 22 C and cloudy.<|im_end|>\n'
              '<|im_start|>assistant\n')
    user = "<|im_start|>user\nWeather in Paris and in Rome?<|im_end|>\n"
    assert out.endswith(user + calls + results + answer)


def test_smollm2_without_tools_renders_as_its_own_template(smol, hermes):
    conversations = [
        [{"role": "user", "content": "Hello"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "Tell me a joke."}, {"role": "system", "content": "Later."}],
    ]
    for messages in conversations:
        for gen in (True, False):
            own = smol.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ours = render_chat(smol, messages, chat_template=hermes, add_generation_prompt=gen)
            assert ours == own


@pytest.mark.parametrize("model", ["qwen", "smol"])
def test_request_models_render_like_dicts(model, request):
    tok = request.getfixturevalue(model)
    template = default_chat_template(tok)
    req = ChatCompletionRequest(messages=AGENT, tools=[WEATHER])
    assert (render_chat(tok, req.messages, tools=req.tools, chat_template=template)
            == render_chat(tok, AGENT, tools=[WEATHER], chat_template=template))


def test_template_inputs(qwen, hermes, tmp_path, smol):
    # a file path works like the text; developer is system; continuing a final message
    path = tmp_path / "t.jinja"
    path.write_text(hermes)
    msgs = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render_chat(smol, msgs, chat_template=str(path)) == render_chat(
        smol, msgs, chat_template=hermes)
    assert render_chat(qwen, msgs).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    prefill = msgs + [{"role": "assistant", "content": "Sure, "}]
    out = render_chat(qwen, prefill, add_generation_prompt=False, continue_final_message=True)
    assert out.endswith("<|im_start|>assistant\nSure, ")
    # arguments that are not JSON are shown as written instead of failing the request
    broken = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]
    assert '"arguments": "{oops"' in render_chat(smol, broken, chat_template=hermes)


@pytest.mark.parametrize("kwargs, match", [
    ({"chat_template": "{% for m in messages %}{{ m.content }"}, "syntax error"),
    ({"chat_template": "{{ raise_exception('role tool is not supported') }}"},
     "role tool is not supported"),
    ({"chat_template": "/no/such/template.jinja"}, "cannot be read"),
    ({"chat_template_kwargs": {"tokenize": True}}, "tokenize"),
])
def test_errors_are_value_errors(qwen, kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_chat(qwen, [{"role": "user", "content": "Hi"}], **kwargs)


def test_unsupported_content_is_a_value_error(qwen):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    with pytest.raises(ValueError, match="image_url"):
        render_chat(qwen, [{"role": "user", "content": [image]}])


# --------------------------------------------------------------------------- function_to_tool

class Unit(Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_forecast(city: str, days: int, mode: Literal["daily", "hourly"] = "daily",
                 unit: Unit = Unit.CELSIUS, limit: Optional[int] = None,
                 station_ids: list[int] = [], options: dict[str, dict[str, float]] | None = None):
    """Forecast for a city.

    Args:
        city: The city name,
            e.g. "Paris".
        days (int): How many days ahead.
        mode: Daily or hourly steps.
        station_ids: Weather stations to use.

    Returns:
        The forecast.
    """


def test_function_to_tool_schema():
    tool = function_to_tool(get_forecast)
    fn = tool["function"]
    assert tool["type"] == "function" and fn["name"] == "get_forecast"
    assert fn["description"] == "Forecast for a city."
    params = fn["parameters"]
    assert params["type"] == "object" and params["required"] == ["city", "days"]
    assert "$defs" not in params and "title" not in json.dumps(params)
    props = params["properties"]
    assert props["city"] == {"type": "string", "description": 'The city name, e.g. "Paris".'}
    assert props["days"] == {"type": "integer", "description": "How many days ahead."}
    assert props["mode"] == {"type": "string", "description": "Daily or hourly steps.",
                             "enum": ["daily", "hourly"], "default": "daily"}
    assert props["unit"] == {"type": "string", "enum": ["celsius", "fahrenheit"],
                             "default": "celsius"}
    assert props["limit"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert props["station_ids"]["items"] == {"type": "integer"}
    assert props["station_ids"]["description"] == "Weather stations to use."

    jsonschema.Draft202012Validator.check_schema(params)
    ok = {"city": "Paris", "days": 3, "mode": "hourly", "unit": "fahrenheit", "limit": None,
          "station_ids": [1, 2], "options": {"wind": {"max": 3.5}}}
    jsonschema.validate(ok, params)
    for bad in ({"city": "Paris"}, {"city": "Paris", "days": "3"},
                {"city": "Paris", "days": 3, "mode": "weekly"},
                {"city": "Paris", "days": 3, "station_ids": ["a"]},
                {"city": "Paris", "days": 3, "options": {"wind": {"max": "high"}}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, params)


def test_function_to_tool_edge_cases():
    def no_doc(json: bool, schema: str = "x"):  # names that BaseModel itself uses
        pass

    fn = function_to_tool(no_doc)["function"]
    assert "description" not in fn
    assert fn["parameters"]["properties"] == {"json": {"type": "boolean"},
                                              "schema": {"type": "string", "default": "x"}}

    def untyped(x):
        """No hint."""

    def star(*args: int):
        """Varargs."""

    for bad in (untyped, star):
        with pytest.raises(ValueError):
            function_to_tool(bad)
