"""Mistral: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]` (tokenizers before v11) or
`[TOOL_CALLS]name{args}` / `[TOOL_CALLS]name[CALL_ID]id[ARGS]{args}` repeated per call (v11+).
The text itself tells the forms apart. Mistral tool-call ids are 9 alphanumeric characters.
"""

import secrets
import string

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, NameThenJson, ToolCallFormat

MARKER = "[TOOL_CALLS]"
JSON_LIST = ToolCallFormat(JsonObject(), region_start=MARKER, list_wrapped=True)
NAME_ARGS = ToolCallFormat(NameThenJson(id_marker="[CALL_ID]", args_marker="[ARGS]"),
                           call_start=MARKER)
JSON_OBJECT = ToolCallFormat(JsonObject(), call_start=MARKER)

_ALPHANUMERIC = string.ascii_letters + string.digits


@ToolParserManager.register_module("mistral")
class MistralToolParser(FormatToolParser):
    formats = (JSON_LIST, NAME_ARGS, JSON_OBJECT)

    def new_tool_call_id(self) -> str:
        return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(9))
