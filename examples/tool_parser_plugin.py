"""Third-party tool-call formats in a few lines each.

Suppose a model writes `<functioncall> {"name": "f", "arguments": {...}}` for each call. Load
this file with `callm serve --tool-parser-plugin examples/tool_parser_plugin.py
--tool-call-parser functioncall`, or install it as a package that declares

    [project.entry-points."callm.tool_parsers"]
    functioncall = "tool_parser_plugin:FunctionCallToolParser"

Because a format is declared rather than hand-parsed, streaming, chunking and the
grammar for `tool_choice="required"` come with it. The second parser below reads markup
parameters, `<call name="f"><arg name="k">v</arg></call>`, whose text values become the types
the tool's JSON Schema declares ("3" -> 3 for an integer, "true" -> true for a boolean).
"""

from callm.tool_parsers import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, ToolCallFormat, XmlParameters


@ToolParserManager.register_module("functioncall")
class FunctionCallToolParser(FormatToolParser):
    formats = (ToolCallFormat(JsonObject(), call_start="<functioncall>"),)


@ToolParserManager.register_module("xmlcall")
class XmlCallToolParser(FormatToolParser):
    formats = (ToolCallFormat(XmlParameters(name_prefix='<call name="', name_suffix='">',
                                            key_prefix='<arg name="', key_suffix='">',
                                            value_suffix="</arg>", call_suffix="</call>",
                                            grammar_style=""),
                              call_start="<tool>", call_end="</tool>"),)
