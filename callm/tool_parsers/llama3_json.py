"""Llama 3.1 / 3.2 / 4 JSON tool calls: optional `<|python_tag|>`, then
`{"name": "f", "parameters": {...}}` (`arguments` accepted too), several separated by `;`.
Without the tag, the output must start with the object.
"""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, ToolCallFormat

LLAMA3_JSON = ToolCallFormat(JsonObject(args_keys=("parameters", "arguments")),
                             region_start="<|python_tag|>", bare="output_start", separator=";")


@ToolParserManager.register_module(["llama3_json", "llama4_json", "llama3"])
class Llama3JsonToolParser(FormatToolParser):
    formats = (LLAMA3_JSON,)
