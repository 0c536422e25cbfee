"""Families that write a call's parameters as markup, one tag per parameter, with text values
typed by the tool's JSON Schema (see `formats.XmlParameters`)."""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import ToolCallFormat, XmlParameters

QWEN_XML = XmlParameters()
INVOKE_XML = XmlParameters(name_prefix='<invoke name="', name_suffix='">',
                           key_prefix='<parameter name="', key_suffix='">',
                           value_suffix="</parameter>", call_suffix="</invoke>",
                           grammar_style="minimax_xml")


@ToolParserManager.register_module(["qwen3_coder", "qwen3_xml", "step3p5"])
class Qwen3CoderToolParser(FormatToolParser):
    """Qwen3-Coder, Qwen3.5+, Step-3.5:
    `<tool_call>\\n<function=f>\\n<parameter=k>\\nv\\n</parameter>\\n</function>\\n</tool_call>`."""

    formats = (ToolCallFormat(QWEN_XML, call_start="<tool_call>", call_end="</tool_call>",
                              call_padding="\n"),
               ToolCallFormat(QWEN_XML, bare="line_start", known_names_only=True))


@ToolParserManager.register_module("seed_oss")
class SeedOssToolParser(FormatToolParser):
    """Seed-OSS: `<seed:tool_call><function=f><parameter=k>v</parameter></function></seed:tool_call>`."""

    formats = (ToolCallFormat(QWEN_XML, call_start="<seed:tool_call>", call_end="</seed:tool_call>",
                              call_padding="\n"),)


@ToolParserManager.register_module(["glm45", "glm47"])
class Glm45ToolParser(FormatToolParser):
    """GLM-4.5 / 4.6 / 4.7: `<tool_call>f\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>`
    (4.7 writes no newlines)."""

    formats = (ToolCallFormat(XmlParameters(name_prefix="", name_suffix="", key_prefix="<arg_key>",
                                            key_suffix="</arg_key>", value_prefix="<arg_value>",
                                            value_suffix="</arg_value>", call_suffix="",
                                            grammar_style="glm_xml"),
                              call_start="<tool_call>", call_end="</tool_call>"),)


@ToolParserManager.register_module("minimax_m2")
class MinimaxM2ToolParser(FormatToolParser):
    """MiniMax-M2: `<minimax:tool_call><invoke name="f"><parameter name="k">v</parameter></invoke>
    </minimax:tool_call>`, several invokes in one block."""

    formats = (ToolCallFormat(INVOKE_XML, region_start="<minimax:tool_call>",
                              region_end="</minimax:tool_call>", joiner="\n"),)


@ToolParserManager.register_module("step3")
class Step3ToolParser(FormatToolParser):
    """Step-3: `<｜tool_calls_begin｜><｜tool_call_begin｜><steptml:invoke name="f">
    <steptml:parameter name="k">v</steptml:parameter></steptml:invoke><｜tool_call_end｜>
    <｜tool_calls_end｜>`."""

    formats = (ToolCallFormat(XmlParameters(name_prefix='<steptml:invoke name="', name_suffix='">',
                                            key_prefix='<steptml:parameter name="',
                                            key_suffix='">', value_suffix="</steptml:parameter>",
                                            call_suffix="</steptml:invoke>", grammar_style=""),
                              region_start="<｜tool_calls_begin｜>", region_end="<｜tool_calls_end｜>",
                              call_start="<｜tool_call_begin｜>", call_end="<｜tool_call_end｜>"),)
