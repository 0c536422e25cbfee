"""Llama 3.1 / 3.2 / 4 JSON tool calls: optional `<|python_tag|>`, then
`{"name": "f", "parameters": {...}}` (`arguments` accepted too), several separated by `;`.

Without the tag the object may open the output, or sit anywhere in the text: Llama 3 models
write `Here is the result: {"name": ...}; {"name": ...} Would you like more?`. Untagged objects
amid text are calls only when they name one of the request's tools, so ordinary JSON in an
answer stays content; the text around the calls is content.
"""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, ToolCallFormat

LLAMA3_JSON = ToolCallFormat(JsonObject(args_keys=("parameters", "arguments")),
                             region_start="<|python_tag|>", bare="output_start", separator=";")
LLAMA3_JSON_IN_TEXT = ToolCallFormat(JsonObject(args_keys=("parameters", "arguments")),
                                     bare="anywhere", separator=";", known_names_only=True)


@ToolParserManager.register_module(["llama3_json", "llama4_json", "llama3"])
class Llama3JsonToolParser(FormatToolParser):
    formats = (LLAMA3_JSON, LLAMA3_JSON_IN_TEXT)
