"""Families that write each call as a JSON object (`{"name": ..., "arguments": ...}`), alone or
in a JSON list, between their own markers: each is a few lines of description."""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, ToolCallFormat

JSON = JsonObject()
PARAMETERS_FIRST = JsonObject(args_keys=("parameters", "arguments"))


@ToolParserManager.register_module("granite")
class GraniteToolParser(FormatToolParser):
    """Granite 3.0 / 3.1: `<|tool_call|>[{...}, ...]` (3.1 may write `<tool_call>`)."""

    formats = (ToolCallFormat(JSON, region_start="<|tool_call|>", list_wrapped=True),
               ToolCallFormat(JSON, region_start="<tool_call>", list_wrapped=True))


@ToolParserManager.register_module("granite-20b-fc")
class Granite20bFCToolParser(FormatToolParser):
    """granite-20b-functioncalling: `<function_call> {...}` before each call."""

    formats = (ToolCallFormat(JSON, call_start="<function_call>", call_padding=" "),)


@ToolParserManager.register_module("granite4")
class Granite4ToolParser(FormatToolParser):
    """Granite 4.0: `<tool_call>{...}</tool_call>` for each call."""

    formats = (ToolCallFormat(JSON, call_start="<tool_call>", call_end="</tool_call>"),)


@ToolParserManager.register_module(["internlm", "interns1"])
class InternLMToolParser(FormatToolParser):
    """InternLM 2.5 / Intern-S1: `<|action_start|><|plugin|>{"name": ..., "parameters": ...}
    <|action_end|>` (Intern-S1 puts a space between the two start tokens)."""

    formats = tuple(ToolCallFormat(PARAMETERS_FIRST, call_start=start, call_end="<|action_end|>",
                                   call_padding="\n")
                    for start in ("<|action_start|><|plugin|>", "<|action_start|> <|plugin|>"))


@ToolParserManager.register_module("jamba")
class JambaToolParser(FormatToolParser):
    """Jamba 1.5: `<tool_calls>[{...}, ...]</tool_calls>`."""

    formats = (ToolCallFormat(JSON, region_start="<tool_calls>", region_end="</tool_calls>",
                              list_wrapped=True),)


@ToolParserManager.register_module("hunyuan_a13b")
class HunyuanA13BToolParser(FormatToolParser):
    """Hunyuan-A13B: `<tool_calls>[{...}, ...]</tool_calls>`."""

    formats = JambaToolParser.formats


@ToolParserManager.register_module("phi4_mini_json")
class Phi4MiniJsonToolParser(FormatToolParser):
    """Phi-4-mini: `functools[{...}, ...]`."""

    formats = (ToolCallFormat(JSON, region_start="functools", list_wrapped=True),)


@ToolParserManager.register_module("longcat")
class LongcatToolParser(FormatToolParser):
    """LongCat-Flash: `<longcat_tool_call>{...}</longcat_tool_call>` for each call."""

    formats = (ToolCallFormat(JSON, call_start="<longcat_tool_call>",
                              call_end="</longcat_tool_call>", call_padding="\n"),)


@ToolParserManager.register_module("ernie45")
class Ernie45ToolParser(FormatToolParser):
    """ERNIE 4.5: `<tool_call>\\n{...}\\n</tool_call>` for each call."""

    formats = (ToolCallFormat(JSON, call_start="<tool_call>", call_end="</tool_call>",
                              call_padding="\n"),)


@ToolParserManager.register_module("gigachat3")
class GigaChat3ToolParser(FormatToolParser):
    """GigaChat 3: `<|message_sep|>\\n\\nfunction call<|role_sep|>\\n{...}`, one call."""

    formats = (ToolCallFormat(JSON, call_start="function call<|role_sep|>", call_padding="\n",
                              drop_markers=("<|message_sep|>",)),
               ToolCallFormat(JSON, call_start="<|function_call|>"))


@ToolParserManager.register_module("xlam")
class XLAMToolParser(FormatToolParser):
    """xLAM: a JSON list of calls, bare or in a ```json fence, or after `[TOOL_CALLS]`,
    `<tool_call>` or `</think>`."""

    formats = (ToolCallFormat(JSON, bare="output_start", list_wrapped=True),
               ToolCallFormat(JSON, region_start="```json", region_end="```", list_wrapped=True),
               ToolCallFormat(JSON, region_start="[TOOL_CALLS]", list_wrapped=True),
               ToolCallFormat(JSON, region_start="<tool_call>", region_end="</tool_call>",
                              list_wrapped=True),
               ToolCallFormat(JSON, region_start="</think>", list_wrapped=True))


@ToolParserManager.register_module("minimax")
class MinimaxToolParser(FormatToolParser):
    """MiniMax-M1: `<tool_calls>\\n{...}\\n{...}\\n</tool_calls>`, one object per line."""

    formats = (ToolCallFormat(JSON, region_start="<tool_calls>", region_end="</tool_calls>",
                              joiner="\n"),)


@ToolParserManager.register_module(["apertus", "apertus2509"])
class ApertusToolParser(FormatToolParser):
    """Apertus: `<|tools_prefix|>[{"f": {args}}, ...]<|tools_suffix|>`, the name as the key."""

    formats = (ToolCallFormat(JsonObject(name_is_key=True), region_start="<|tools_prefix|>",
                              region_end="<|tools_suffix|>", list_wrapped=True),)


@ToolParserManager.register_module(["cohere_command3", "cohere_command4"])
class CohereCommandToolParser(FormatToolParser):
    """Cohere Command A / cmd4: `<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "f",
    "parameters": {...}}, ...]<|END_ACTION|>`, the model's ids kept; the response and thinking
    markers are markup."""

    formats = (ToolCallFormat(JsonObject(name_keys=("tool_name",), args_keys=("parameters",),
                                         id_key="tool_call_id"),
                              region_start="<|START_ACTION|>", region_end="<|END_ACTION|>",
                              list_wrapped=True,
                              drop_markers=("<|START_RESPONSE|>", "<|END_RESPONSE|>",
                                            "<|START_TEXT|>", "<|END_TEXT|>",
                                            "<|START_THINKING|>", "<|END_THINKING|>")),)


@ToolParserManager.register_module("inkling")
class InklingToolParser(FormatToolParser):
    """Inkling: `<|message_model|><|content_invoke_tool_json|>{"name": "f", "args": {...}}
    <|end_message|>`; the other block markers are markup."""

    formats = (ToolCallFormat(JsonObject(args_keys=("args", "arguments")),
                              call_start="<|content_invoke_tool_json|>", call_end="<|end_message|>",
                              drop_markers=("<|message_model|>", "<|content_text|>",
                                            "<|content_thinking|>", "<|end_message|>",
                                            "<|content_model_end_sampling|>")),)
