"""Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`.

Small Qwen models often drop the tags and write the bare object, or a ```json fenced one; those
count as calls only when the object names one of the request's tools.
"""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, ToolCallFormat

HERMES = ToolCallFormat(JsonObject(), call_start="<tool_call>", call_end="</tool_call>",
                        call_padding="\n")
FENCED_JSON = ToolCallFormat(JsonObject(), region_start="```json", region_end="```",
                             known_names_only=True)
# The closing tag the model may still write after a bare object is markup too.
BARE_JSON = ToolCallFormat(JsonObject(), bare="line_start", known_names_only=True,
                           call_end="</tool_call>")


@ToolParserManager.register_module(["hermes", "qwen3_json", "qwen25", "qwen", "trinity"])
class HermesToolParser(FormatToolParser):
    formats = (HERMES, FENCED_JSON, BARE_JSON)
