"""Gemma 4 and FunctionGemma: `call:NAME{key:value,...}` with the family's own string quotes
(see `formats.DslCall`)."""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import DslCall, ToolCallFormat


@ToolParserManager.register_module("gemma4")
class Gemma4ToolParser(FormatToolParser):
    """Gemma 4: `<|tool_call>call:NAME{k:<|"|>v<|"|>,n:3}<tool_call|>` for each call."""

    formats = (ToolCallFormat(DslCall(), call_start="<|tool_call>", call_end="<tool_call|>"),)


@ToolParserManager.register_module("functiongemma")
class FunctionGemmaToolParser(FormatToolParser):
    """FunctionGemma 270M: `<start_function_call>call:NAME{k:<escape>v<escape>}<end_function_call>`."""

    formats = (ToolCallFormat(DslCall(quote="<escape>", grammar_style=""),
                              call_start="<start_function_call>", call_end="<end_function_call>"),)
