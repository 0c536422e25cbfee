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
    "olmo3": "pythonic:Olmo3ToolParser",
    "lfm2": "pythonic:Lfm2ToolParser",
    "granite": "json_families:GraniteToolParser",
    "granite-20b-fc": "json_families:Granite20bFCToolParser",
    "internlm": "json_families:InternLMToolParser",
    "jamba": "json_families:JambaToolParser",
    "hunyuan_a13b": "json_families:HunyuanA13BToolParser",
    "phi4_mini_json": "json_families:Phi4MiniJsonToolParser",
    "longcat": "json_families:LongcatToolParser",
    "ernie45": "json_families:Ernie45ToolParser",
    "gigachat3": "json_families:GigaChat3ToolParser",
    "xlam": "json_families:XLAMToolParser",
    "deepseek_v3": "deepseek:DeepSeekV3ToolParser",
    "deepseek_v31": "deepseek:DeepSeekV31ToolParser",
    "kimi_k2": "kimi_k2:KimiK2ToolParser",
    "qwen3_coder": "xml_families:Qwen3CoderToolParser",
    "qwen3_xml": "xml_families:Qwen3CoderToolParser",
    "step3p5": "xml_families:Qwen3CoderToolParser",
    "seed_oss": "xml_families:SeedOssToolParser",
    "glm45": "xml_families:Glm45ToolParser",
    "glm47": "xml_families:Glm45ToolParser",
    "minimax_m2": "xml_families:MinimaxM2ToolParser",
    "step3": "xml_families:Step3ToolParser",
    "gemma4": "gemma:Gemma4ToolParser",
    "functiongemma": "gemma:FunctionGemmaToolParser",
    "openai": "openai:OpenAIToolParser",
}

for _name, _target in _BUILTIN_PARSERS.items():
    ToolParserManager.register_lazy_module(_name, f"{__name__}.{_target}")
