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


@ToolParserManager.register_module("internlm")
class InternLMToolParser(FormatToolParser):
    """InternLM 2.5: `<|action_start|><|plugin|>{"name": ..., "parameters": ...}<|action_end|>`."""

    formats = (ToolCallFormat(PARAMETERS_FIRST, call_start="<|action_start|><|plugin|>",
                              call_end="<|action_end|>", call_padding="\n"),)


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
