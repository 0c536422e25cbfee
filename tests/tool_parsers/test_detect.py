"""`--tool-call-parser auto`: the parser is detected from the chat template.

Real templates where a tokenizer ships one (Qwen2.5's; SmolLM2 with callm's Hermes template),
and faithful small templates written here for the rest: each renders an assistant message's
`tool_calls` the way its family's own template does.
"""

import json
import logging

import pytest
from parser_fixtures import FIXTURES
from parser_fixtures import TOOLS as FIXTURE_TOOLS
from real_tokenizers import as_real_tokenizer, qwen25_tokenizer, smollm2_tokenizer

from callm.entrypoints.chat_utils import HERMES_TOOLS_TEMPLATE_PATH
from callm.tool_parsers import ToolParserManager
from callm.tool_parsers.detect import (AUTO, PROBE_CALLS, Probe, detect_tool_parser,
                                       explain_tool_parser, rank_parsers, render_probes,
                                       resolve_tool_parser)


def literal(text: str) -> str:
    """`text` as a Jinja string expression (no whitespace-control surprises)."""
    return "{{- " + json.dumps(text, ensure_ascii=False) + " }}"


def chat(calls: str, *, user=("<|user|>\n", "<|end|>\n"), assistant=("<|assistant|>\n",
         "<|end|>\n"), tools=("<|system|>\nTools: ", "<|end|>\n")) -> str:
    """A small chat template: tools in a system turn, user and assistant turns between the
    given markers, and `calls` (Jinja, over `message.tool_calls`) for an assistant's calls."""
    return (
        "{%- if tools %}" + literal(tools[0]) + "{{- tools | tojson }}" + literal(tools[1])
        + "{%- endif %}"
        "{%- for message in messages %}"
        "{%- if message.role == 'user' %}" + literal(user[0]) + "{{- message.content }}"
        + literal(user[1]) +
        "{%- elif message.role == 'assistant' %}" + literal(assistant[0])
        + "{%- if message.content %}{{- message.content }}{%- endif %}"
        "{%- if message.tool_calls %}" + calls + "{%- endif %}" + literal(assistant[1]) +
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}" + literal(assistant[0]) + "{%- endif %}")


def each_call(body: str, between: str = "") -> str:
    """`body` for each call, with `name`, `args` (an object) and `args_json` set."""
    return ("{%- for tc in message.tool_calls %}"
            "{%- set name = tc.function.name %}{%- set args = tc.function.arguments %}"
            "{%- set args_json = args if args is string else args | tojson %}"
            + body + ("{%- if not loop.last %}" + literal(between) + "{%- endif %}"
                      if between else "") + "{%- endfor %}")


def json_list(name_key="name", args_key="arguments") -> str:
    return ("{{- '[' }}" + each_call(
        "{{- '{\"" + name_key + "\": ' + name | tojson + ', \"" + args_key + "\": ' + args_json"
        " + '}' }}", ", ") + "{{- ']' }}")


def json_object(args_key="arguments") -> str:
    return "{{- '{\"name\": ' + name | tojson + ', \"" + args_key + "\": ' + args_json + '}' }}"


def pythonic_calls(between=", ") -> str:
    return each_call("{{- name + '(' }}{%- for k, v in args.items() %}{{- k + '=' + v | tojson }}"
                     "{%- if not loop.last %}{{- ', ' }}{%- endif %}{%- endfor %}{{- ')' }}",
                     between)


def xml_params(key: str, value_open: str, value_close: str) -> str:
    """Each argument as `key`(k) `value_open` v `value_close`; `key` has `{k}` in it."""
    before, after = key.split("{k}")
    return ("{%- for k, v in args.items() %}" + literal(before) + "{{- k }}" + literal(after)
            + literal(value_open) + "{{- v if v is string else v | tojson }}"
            + literal(value_close) + "{%- endfor %}")


TEMPLATES = {
    # Qwen3-Coder / Qwen3.5: XML parameters inside <tool_call>
    "qwen3_coder": chat(each_call(
        literal("\n<tool_call>\n<function=") + "{{- name }}" + literal(">\n")
        + xml_params("<parameter={k}>", "\n", "\n</parameter>\n")
        + literal("</function>\n</tool_call>")), user=("<|im_start|>user\n", "<|im_end|>\n"),
        assistant=("<|im_start|>assistant\n", "<|im_end|>\n")),
    # GLM-4.5: name after <tool_call>, <arg_key>/<arg_value> pairs
    "glm45": chat(each_call(
        literal("\n<tool_call>") + "{{- name }}" + literal("\n")
        + xml_params("<arg_key>{k}</arg_key>\n", "<arg_value>", "</arg_value>\n")
        + literal("</tool_call>")), user=("<|user|>\n", ""), assistant=("<|assistant|>", "")),
    # MiniMax-M2: <invoke name=...> blocks in one <minimax:tool_call> region
    "minimax_m2": chat(literal("<minimax:tool_call>\n") + each_call(
        literal('<invoke name="') + "{{- name }}" + literal('">\n')
        + xml_params('<parameter name="{k}">', "", "</parameter>\n") + literal("</invoke>\n"))
        + literal("</minimax:tool_call>"), user=("]~b]user\n", "[e~[\n"),
        assistant=("]~b]ai\n", "[e~[\n")),
    # DeepSeek-V3.1: its template concatenates the arguments as text (`+ arguments +`)
    "deepseek_v31": chat(
        literal("<｜tool▁calls▁begin｜>") + each_call(
            "{{- '<｜tool▁call▁begin｜>' + name + '<｜tool▁sep｜>' + tc.function.arguments"
            " + '<｜tool▁call▁end｜>' }}") + literal("<｜tool▁calls▁end｜>"),
        user=("<｜User｜>", ""), assistant=("<｜Assistant｜></think>", "<｜end▁of▁sentence｜>")),
    # DeepSeek-V3: `function<｜tool▁sep｜>NAME` and a ```json fence
    "deepseek_v3": chat(
        literal("<｜tool▁calls▁begin｜>") + each_call(
            "{{- '<｜tool▁call▁begin｜>' + tc.type + '<｜tool▁sep｜>' + name + '\\n```json\\n'"
            " + tc.function.arguments + '\\n```<｜tool▁call▁end｜>' }}", "\n")
        + literal("<｜tool▁calls▁end｜>"),
        user=("<｜User｜>", ""), assistant=("<｜Assistant｜>", "<｜end▁of▁sentence｜>")),
    # Kimi K2: the call id (`functions.NAME:IDX`) is written as the call's name
    "kimi_k2": chat(
        literal("<|tool_calls_section_begin|>") + each_call(
            "{{- '<|tool_call_begin|>' + tc.id + '<|tool_call_argument_begin|>' + args_json"
            " + '<|tool_call_end|>' }}") + literal("<|tool_calls_section_end|>"),
        user=("<|im_user|>user<|im_middle|>", "<|im_end|>"),
        assistant=("<|im_assistant|>assistant<|im_middle|>", "<|im_end|>")),
    # Gemma 4: call:NAME{key:<|"|>text<|"|>}
    "gemma4": chat(each_call(
        "{{- '<|tool_call>call:' + name + '{' }}{%- for k, v in args.items() %}{{- k + ':' }}"
        "{%- if v is string %}{{- '<|\"|>' + v + '<|\"|>' }}{%- else %}{{- v | tojson }}"
        "{%- endif %}{%- if not loop.last %}{{- ',' }}{%- endif %}{%- endfor %}"
        "{{- '}<tool_call|>' }}"),
        user=("<|turn>user\n", "<turn|>\n"), assistant=("<|turn>model\n", "<turn|>\n")),
    # Granite 3.0: <|tool_call|> and a JSON list
    "granite": chat(literal("<|tool_call|>") + json_list(),
                    user=("<|start_of_role|>user<|end_of_role|>", "<|end_of_text|>\n"),
                    assistant=("<|start_of_role|>assistant<|end_of_role|>",
                               "<|end_of_text|>\n")),
    # Jamba 1.5: <tool_calls>[...]</tool_calls>
    "jamba": chat(literal("<tool_calls>") + json_list() + literal("</tool_calls>"),
                  user=("<|bom|><|start_turn|>user\n", "<|eom|>"),
                  assistant=("<|bom|><|start_turn|>assistant\n", "<|eom|>")),
    # gpt-oss Harmony: the call is a message to functions.NAME; the header is part of it
    "openai": chat(
        "{%- if message.tool_calls | length > 1 %}{{- raise_exception('one call at a time') }}"
        "{%- endif %}" + each_call(
            "{{- ' to=functions.' + name + '<|channel|>commentary json<|message|>' + args_json"
            " + '<|call|>' }}"),
        user=("<|start|>user<|message|>", "<|end|>"), assistant=("<|start|>assistant", "")),
    # Llama 3.2 pythonic / ToolACE: a bare Python list of calls
    "pythonic": chat(literal("[") + pythonic_calls() + literal("]"),
                     user=("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
                     assistant=("<|start_header_id|>assistant<|end_header_id|>\n\n",
                                "<|eot_id|>")),
    # Llama 4 pythonic: the list between <|python_start|> and <|python_end|>
    "llama4_pythonic": chat(literal("<|python_start|>[") + pythonic_calls() + literal(
        "]<|python_end|>"), user=("<|header_start|>user<|header_end|>\n\n", "<|eot|>"),
        assistant=("<|header_start|>assistant<|header_end|>\n\n", "<|eot|>")),
    # OLMo 3: <function_calls>, one Python call a line
    "olmo3": chat(literal("<function_calls>") + pythonic_calls("\n")
                  + literal("</function_calls>")),
    # LFM2: <|tool_call_start|>[calls]<|tool_call_end|>
    "lfm2": chat(literal("<|tool_call_start|>[") + pythonic_calls()
                 + literal("]<|tool_call_end|>")),
    # Seed-OSS: Qwen-style XML in <seed:tool_call>
    "seed_oss": chat(each_call(
        literal("<seed:tool_call>\n<function=") + "{{- name }}" + literal(">\n")
        + xml_params("<parameter={k}>", "", "</parameter>\n")
        + literal("</function>\n</seed:tool_call>")),
        user=("<seed:bos>user\n", "<seed:eos>"), assistant=("<seed:bos>assistant\n",
                                                            "<seed:eos>")),
    # InternLM 2.5: {"name", "parameters"} between <|action_start|><|plugin|> and <|action_end|>
    "internlm": chat(each_call(literal("<|action_start|><|plugin|>\n")
                               + json_object("parameters") + literal("<|action_end|>"), "\n"),
                     user=("<|im_start|>user\n", "<|im_end|>\n"),
                     assistant=("<|im_start|>assistant\n", "<|im_end|>\n")),
    # Phi-4-mini: functools[...]
    "phi4_mini_json": chat(literal("functools") + json_list()),
    # LongCat-Flash: Hermes-like JSON, its own tags
    "longcat": chat(each_call(literal("<longcat_tool_call>\n") + json_object()
                              + literal("\n</longcat_tool_call>"), "\n")),
    # xLAM: a bare JSON list
    "xlam": chat(json_list()),
    # FunctionGemma: call:NAME{key:<escape>text<escape>}
    "functiongemma": chat(each_call(
        "{{- '<start_function_call>call:' + name + '{' }}{%- for k, v in args.items() %}"
        "{{- k + ':<escape>' + v + '<escape>' }}{%- if not loop.last %}{{- ',' }}{%- endif %}"
        "{%- endfor %}{{- '}<end_function_call>' }}")),
    # Mistral v11+ (tekken): [TOOL_CALLS]NAME[ARGS]{...} per call
    "mistral": chat(each_call("{{- '[TOOL_CALLS]' + name + '[ARGS]' + args_json }}"),
                    user=("[INST]", "[/INST]"), assistant=("", "</s>")),
}

# Families whose markup reads the same as a preferred one (see TIE_PREFERENCE): detected as it.
SAME_SHAPE = {
    # ERNIE 4.5 writes Hermes' <tool_call> JSON
    "hermes": chat(each_call(literal("<tool_call>\n") + json_object()
                             + literal("\n</tool_call>"), "\n"),
                   user=("User: ", "\n"), assistant=("Assistant: ", "<|end_of_sentence|>")),
    # Hunyuan-A13B writes Jamba's <tool_calls>[...]</tool_calls>
    "jamba": chat(literal("<tool_calls>") + json_list() + literal("</tool_calls>"),
                  user=("<|startoftext|>", "<|extra_0|>"), assistant=("", "<|eos|>")),
}

# Llama 3.1 / 3.2's template, as Meta ships it (the tool parts; Llama 3.2's tokenizer.json
# comes without a template): one call, `{"name": ..., "parameters": ...}`, then <|eot_id|>.
LLAMA31 = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: 26 Jul 2024\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- if tools is not none %}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Mistral 7B Instruct v0.3's template (tools before the last user turn; calls as a JSON list
# after [TOOL_CALLS], each with its 9-character id; the template refuses other ids).
MISTRAL_V3 = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

NO_TOOLS = chat("")  # assistant tool calls are dropped


@pytest.fixture(scope="module")
def tokenizer():
    """Renders the hand-written templates (they use no tokens of their own)."""
    return smollm2_tokenizer().raw


# --------------------------------------------------------------------------- real templates

def test_qwen25_template_is_hermes(caplog):
    with caplog.at_level(logging.INFO, logger="callm.tool_parsers.detect"):
        assert detect_tool_parser(qwen25_tokenizer().raw, None) == "hermes"
    [record] = [r for r in caplog.records if r.name == "callm.tool_parsers.detect"]
    assert "hermes" in record.getMessage() and "<tool_call>" in record.getMessage()


def test_smollm2_with_the_shipped_hermes_template_is_hermes():
    tok = smollm2_tokenizer().raw
    assert detect_tool_parser(tok, str(HERMES_TOOLS_TEMPLATE_PATH)) == "hermes"
    assert detect_tool_parser(tok, HERMES_TOOLS_TEMPLATE_PATH.read_text()) == "hermes"


def test_llama31_template_is_llama3_json(tokenizer):
    detection = explain_tool_parser(tokenizer, LLAMA31)
    assert detection.name == "llama3_json"
    # Hermes also reads a bare JSON line naming a tool, but only as a fallback: not chosen.
    assert "hermes" in detection.also and "in its own format" in detection.reason


def test_mistral_v3_template_is_mistral(tokenizer):
    detection = explain_tool_parser(tokenizer, MISTRAL_V3)
    assert detection.name == "mistral"
    assert "xlam" in detection.also  # xLAM reads `[TOOL_CALLS] [...]` too, as a fallback


@pytest.mark.parametrize("file", ["tekken_240718.json",
                                  "mistral_instruct_tokenizer_240323.model.v3"])
def test_mistral_common_rendering_is_mistral(file):
    """The assistant turn as mistral-common itself encodes it (no Jinja involved)."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    # finetuning mode: a conversation may end with the assistant's calls
    mistral = MistralTokenizer.from_file(MistralTokenizer._data_path() / file,
                                         mode=ValidationMode.finetuning)
    text_of = as_real_tokenizer(mistral).decode
    tools = [Tool(function=Function(name=name, description="", parameters={
        "type": "object", "properties": {"city": {"type": "string"}}}))
        for name in ("get_weather", "get_time")]
    probes = []
    for calls in PROBE_CALLS:
        request = ChatCompletionRequest(tools=tools, messages=[
            UserMessage(content="What's the weather like in Paris?"),
            AssistantMessage(tool_calls=[
                ToolCall(id=f"callm{i:04d}", function=FunctionCall(name=n, arguments=json.dumps(a)))
                for i, (n, a) in enumerate(calls)])])
        text = text_of(mistral.encode_chat_completion(request).tokens)
        probes.append(Probe(calls, (text[text.rindex("[/INST]") + len("[/INST]"):],)))
    assert probes[0].turns[0].startswith("[TOOL_CALLS]")
    assert rank_parsers(probes)[0][0] == "mistral"


# --------------------------------------------------------------------------- family templates

@pytest.mark.parametrize("expected", sorted(TEMPLATES))
def test_family_template(tokenizer, expected):
    assert detect_tool_parser(tokenizer, TEMPLATES[expected]) == expected


@pytest.mark.parametrize("expected", sorted(SAME_SHAPE))
def test_same_shape_families_get_the_preferred_name(tokenizer, expected):
    detection = explain_tool_parser(tokenizer, SAME_SHAPE[expected])
    assert detection.name == expected and "is preferred" in detection.reason


def test_template_that_concatenates_arguments_is_probed_with_text_arguments(tokenizer):
    probes, errors = render_probes(tokenizer, TEMPLATES["deepseek_v31"])
    assert probes and errors  # objects cannot be concatenated: those variants were skipped
    assert all('{"city": "Paris"}' in p.turns[0] for p in probes)


def test_kimi_ids_are_probed(tokenizer):
    probes, _ = render_probes(tokenizer, TEMPLATES["kimi_k2"])
    assert any("functions.get_weather:0" in turn for p in probes for turn in p.turns)


def test_think_block_before_calls(tokenizer):
    template = chat(literal("<think>\n\n</think>\n\n") + literal("[") + pythonic_calls()
                    + literal("]"))
    assert detect_tool_parser(tokenizer, template) == "pythonic"


# --------------------------------------------------------------------------- failures

def test_template_without_tool_calls_names_the_candidates(tokenizer):
    with pytest.raises(ValueError) as e:
        detect_tool_parser(tokenizer, NO_TOOLS)
    message = str(e.value)
    assert "cannot detect the tool-call format" in message
    assert all(name in message for name in ("hermes", "mistral", "llama3_json", "pythonic",
                                            "qwen3_coder", "openai"))
    assert "--tool-call-parser" in message


def test_smollm2_own_template_ignores_tools():
    with pytest.raises(ValueError, match="Tried: .*hermes"):
        detect_tool_parser(smollm2_tokenizer().raw, None)


def test_template_that_always_raises(tokenizer):
    template = chat("{{- raise_exception('no tool calls here') }}")
    with pytest.raises(ValueError, match="no tool calls here"):
        detect_tool_parser(tokenizer, template)


def test_resolve(tokenizer):
    assert resolve_tool_parser("pythonic", tokenizer, NO_TOOLS) == "pythonic"  # named: kept
    assert resolve_tool_parser(AUTO, tokenizer, TEMPLATES["glm45"]) == "glm45"
    assert resolve_tool_parser(None, tokenizer, NO_TOOLS, required=False) is None
    with pytest.raises(ValueError):
        resolve_tool_parser(AUTO, tokenizer, NO_TOOLS)


# --------------------------------------------------------------------------- every parser

def _first_call_case(cases):
    """The family's first case that is nothing but complete calls."""
    for case_id, output, calls, content in cases:
        if calls and content is None and all(isinstance(a, dict) for _, a in calls):
            return case_id, output, calls
    return None


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_parser_wins_on_its_own_markup(name):
    """Specificity across the whole registry: on a family's own output, the family's parser is
    among the best ranked (ties are parsers that read it the same way)."""
    case = _first_call_case(FIXTURES[name])
    if case is None:
        pytest.skip(f"{name} has no complete-call fixture")
    _, output, calls = case
    ranked = rank_parsers([Probe(tuple(calls), (output,))], tools=FIXTURE_TOOLS)
    cls = ToolParserManager.get_tool_parser(name)
    best = [n for n, s in ranked if s.key() == ranked[0][1].key()]
    assert any(ToolParserManager.get_tool_parser(n) is cls for n in best), (name, ranked[:3])


def test_whole_rendering_after_the_user_turn_when_it_cannot_end_with_the_user(tokenizer):
    """A template that refuses to render the user turn alone: the assistant turn is whatever
    follows the user's text."""
    template = ("{%- if messages[-1].role == 'user' %}{{- raise_exception('ends with user') }}"
                "{%- endif %}" + TEMPLATES["lfm2"])
    assert detect_tool_parser(tokenizer, template) == "lfm2"


# --------------------------------------------------------------------------- wiring

def _serving_chat(tokenizer, **fields):
    from types import SimpleNamespace

    from callm.entrypoints.openai.serving_chat import OpenAIServingChat
    from callm.entrypoints.openai.serving_common import ServingContext

    ctx = ServingContext(engine=SimpleNamespace(tokenizer=tokenizer), model_names=["m"],
                         max_model_len=512, metrics=None, **fields)
    return OpenAIServingChat(ctx)


def test_server_resolves_auto_once_at_startup(tokenizer):
    from callm.tool_parsers.hermes import HermesToolParser

    # --enable-auto-tool-choice alone: SmolLM2 is served with callm's Hermes template
    chat_ = _serving_chat(tokenizer, enable_auto_tool_choice=True)
    assert chat_.ctx.tool_parser_name == "hermes" and chat_.parser_cls is HermesToolParser
    chat_ = _serving_chat(tokenizer, enable_auto_tool_choice=True, tool_parser_name=AUTO,
                          chat_template=LLAMA31)
    assert chat_.ctx.tool_parser_name == "llama3_json"
    # nothing asked for: a template without tool calls leaves no parser (required/named use
    # the Hermes encoding, as before)
    chat_ = _serving_chat(tokenizer, chat_template=NO_TOOLS)
    assert chat_.ctx.tool_parser_name is None and chat_.parser_cls is None
    for fields in ({"tool_parser_name": AUTO}, {"enable_auto_tool_choice": True}):
        with pytest.raises(ValueError, match="cannot detect the tool-call format"):
            _serving_chat(tokenizer, chat_template=NO_TOOLS, **fields)
    chat_ = _serving_chat(tokenizer, chat_template=NO_TOOLS, tool_parser_name="pythonic")
    assert chat_.ctx.tool_parser_name == "pythonic"  # a named parser is not second-guessed


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}


def test_llm_auto(tiny_llama_dir, caplog):
    from callm import LLM, SamplingParams

    with caplog.at_level(logging.INFO, logger="callm.tool_parsers.detect"):
        llm = LLM(str(tiny_llama_dir), tool_call_parser=AUTO, dtype="float32",
                  kv_cache_memory=8 * 2**20, max_model_len=512)
    try:
        assert any("using hermes" in r.getMessage() for r in caplog.records)
        ask = [{"role": "user", "content": "Weather in Paris?"}]
        params = SamplingParams(temperature=0, max_tokens=40)
        [out] = llm.chat(ask, params, tools=[WEATHER], tool_choice="required")
        # the grammar wrote a call (maybe cut short by max_tokens), the Hermes parser read it
        assert out.outputs[0].tool_calls[0].function.name == "get_weather"
        # the default when no parser is named is the same detection, once per template
        assert llm._tool_parser(None, LLAMA31).__name__ == "Llama3JsonToolParser"
        # a template that shows no tool calls: auto cannot work, required falls back to Hermes
        with pytest.raises(ValueError, match="cannot detect the tool-call format.*hermes"):
            llm.chat(ask, params, tools=[WEATHER], chat_template=NO_TOOLS)
        [out] = llm.chat(ask, params, tools=[WEATHER], chat_template=NO_TOOLS,
                         tool_choice={"type": "function", "function": {"name": "get_weather"}})
        assert out.outputs[0].tool_calls[0].function.name == "get_weather"
    finally:
        llm.shutdown()


def test_no_chat_template_at_all():
    from real_tokenizers import llama32_tokenizer

    with pytest.raises(ValueError, match="no chat template.*known: .*llama3_json"):
        detect_tool_parser(llama32_tokenizer().raw, None)
