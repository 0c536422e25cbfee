"""Kimi K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX
<|tool_call_argument_begin|>{args}<|tool_call_end|>…<|tool_calls_section_end|>`. The model
writes each call's id (`functions.NAME:IDX`); it is kept, as Kimi's template expects it back."""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import NameThenJson, ToolCallFormat


@ToolParserManager.register_module("kimi_k2")
class KimiK2ToolParser(FormatToolParser):
    """Kimi K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0
    <|tool_call_argument_begin|>{args}<|tool_call_end|><|tool_calls_section_end|>`; the
    model-written `functions.f:0` is the call id."""

    formats = tuple(ToolCallFormat(
        NameThenJson(name_pattern=r"(?:functions\.)?(?P<name>[\w\-.]+?):\d+", id_in_name=True,
                     args_marker="<|tool_call_argument_begin|>",
                     name_template="functions.{name}:{index}"),
        region_start=f"<|tool_{calls}_section_begin|>", region_end=f"<|tool_{calls}_section_end|>",
        call_start="<|tool_call_begin|>", call_end="<|tool_call_end|>")
        for calls in ("calls", "call"))  # the singular spelling occurs too
