"""Tool parsers: model output -> OpenAI tool calls, one module per format family.

Built-in parsers register lazily: importing this package imports none of them.
"""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParser, ToolParserManager

__all__ = ["FormatToolParser", "ToolParser", "ToolParserManager"]

_BUILTIN_PARSERS = {
    "hermes": "hermes:HermesToolParser",
    "qwen3_json": "hermes:HermesToolParser",
    "mistral": "mistral:MistralToolParser",
    "llama3_json": "llama3_json:Llama3JsonToolParser",
    "llama4_json": "llama3_json:Llama3JsonToolParser",
    "pythonic": "pythonic:PythonicToolParser",
    "llama4_pythonic": "pythonic:Llama4PythonicToolParser",
}

for _name, _target in _BUILTIN_PARSERS.items():
    ToolParserManager.register_lazy_module(_name, f"{__name__}.{_target}")
