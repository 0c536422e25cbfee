"""gpt-oss (Harmony): a call is a message addressed to a function,
`<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{args}<|call|>`;
the bodies of other messages are content and their headers markup (see
`formats.HarmonyMessage`)."""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import HarmonyMessage, ToolCallFormat


@ToolParserManager.register_module(["openai", "gpt-oss"])
class OpenAIToolParser(FormatToolParser):
    """gpt-oss (Harmony): `<|start|>assistant<|channel|>commentary to=functions.f
    <|constrain|>json<|message|>{args}<|call|>`; other messages' bodies are content."""

    formats = (ToolCallFormat(HarmonyMessage(), region_start="<|start|>", bare="output_start",
                              call_end="<|call|>",
                              drop_markers=("<|end|>", "<|return|>", "<|call|>")),)
