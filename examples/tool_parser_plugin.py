"""A third-party tool-call format in a few lines.

Suppose a model writes `<functioncall> {"name": "f", "arguments": {...}}` for each call. Load
this file with `callm serve --tool-parser-plugin examples/tool_parser_plugin.py
--tool-call-parser functioncall`, or install it as a package that declares

    [project.entry-points."callm.tool_parsers"]
    functioncall = "tool_parser_plugin:FunctionCallToolParser"

Because the format is declared rather than hand-parsed, streaming, chunking and the
grammar for `tool_choice="required"` come with it.
"""

from callm.tool_parsers import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, ToolCallFormat


@ToolParserManager.register_module("functioncall")
class FunctionCallToolParser(FormatToolParser):
    formats = (ToolCallFormat(JsonObject(), call_start="<functioncall>"),)
