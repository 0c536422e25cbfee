"""Families that write a call's parameters as markup, one tag per parameter, with text values
typed by the tool's JSON Schema (see `formats.XmlParameters`)."""

from dataclasses import replace

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import JsonObject, NestedXml, ToolCallFormat, XmlParameters

QWEN_XML = XmlParameters()
INVOKE_XML = XmlParameters(name_prefix='<invoke name="', name_suffix='">',
                           key_prefix='<parameter name="', key_suffix='">',
                           value_suffix="</parameter>", call_suffix="</invoke>",
                           grammar_style="minimax_xml")
# Names and keys in single quotes, or in none (MiniMax-M2 and dots models write both).
INVOKE_XML_SINGLE_QUOTED = replace(INVOKE_XML, name_prefix="<invoke name='", name_suffix="'>",
                                   key_prefix="<parameter name='", key_suffix="'>")
INVOKE_XML_UNQUOTED = replace(INVOKE_XML, name_prefix="<invoke name=", name_suffix=">",
                              key_prefix="<parameter name=", key_suffix=">")


def _invoke_formats(region_start: str, region_end: str) -> tuple[ToolCallFormat, ...]:
    return tuple(ToolCallFormat(enc, region_start=region_start, region_end=region_end,
                                joiner="\n")
                 for enc in (INVOKE_XML, INVOKE_XML_SINGLE_QUOTED, INVOKE_XML_UNQUOTED))


@ToolParserManager.register_module(["qwen3_coder", "qwen3_xml", "step3p5", "mimo"])
class Qwen3CoderToolParser(FormatToolParser):
    """Qwen3-Coder, Qwen3.5+, Step-3.5, MiMo:
    `<tool_call>\\n<function=f>\\n<parameter=k>\\nv\\n</parameter>\\n</function>\\n</tool_call>`."""

    formats = (ToolCallFormat(QWEN_XML, call_start="<tool_call>", call_end="</tool_call>",
                              call_padding="\n"),
               # `<function=` with no `<tool_call>` before it: the marker is the name's prefix.
               ToolCallFormat(replace(QWEN_XML, name_prefix=""), call_start="<function=",
                              known_names_only=True))


@ToolParserManager.register_module("seed_oss")
class SeedOssToolParser(FormatToolParser):
    """Seed-OSS: `<seed:tool_call><function=f><parameter=k>v</parameter></function></seed:tool_call>`."""

    formats = (ToolCallFormat(QWEN_XML, call_start="<seed:tool_call>", call_end="</seed:tool_call>",
                              call_padding="\n"),)


GLM_XML = XmlParameters(name_prefix="", name_suffix="", key_prefix="<arg_key>",
                        key_suffix="</arg_key>", value_prefix="<arg_value>",
                        value_suffix="</arg_value>", call_suffix="", grammar_style="glm_xml")
DSML = "<｜DSML｜"
DSML_XML = XmlParameters(name_prefix=DSML + 'invoke name="', name_suffix='"',
                         key_prefix=DSML + 'parameter name="', key_suffix='"',
                         attributes_end=">", key_attributes=' string="{string}"',
                         value_suffix="</｜DSML｜parameter>",
                         call_suffix="</｜DSML｜invoke>", grammar_style="deepseek_xml")


@ToolParserManager.register_module(["glm45", "glm47", "glm", "ling3", "poolside_v1", "spark25"])
class Glm45ToolParser(FormatToolParser):
    """GLM-4.5 / 4.6 / 4.7, Ling 3, Poolside v1:
    `<tool_call>f\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>` (4.7 writes no
    newlines, and calls without arguments as `<tool_call>f</tool_call>`)."""

    formats = (ToolCallFormat(GLM_XML, call_start="<tool_call>", call_end="</tool_call>"),)


@ToolParserManager.register_module(["hy_v3", "hunyuan"])
class HYV3ToolParser(FormatToolParser):
    """Hunyuan 3: `<tool_calls>\\n<tool_call>f<tool_sep>\\n<arg_key>k</arg_key>\\n<arg_value>v
    </arg_value>\\n</tool_call>\\n</tool_calls>`."""

    formats = (ToolCallFormat(XmlParameters(name_prefix="", name_suffix="<tool_sep>",
                                            key_prefix="<arg_key>", key_suffix="</arg_key>",
                                            value_prefix="<arg_value>", value_suffix="</arg_value>",
                                            call_suffix="", grammar_style=""),
                              region_start="<tool_calls>", region_end="</tool_calls>",
                              call_start="<tool_call>", call_end="</tool_call>", joiner="\n"),)


@ToolParserManager.register_module("hy_v4")
class HYV4ToolParser(FormatToolParser):
    """Hunyuan 4: `<tool_calls><tool_call>f<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>
    </tool_calls>`."""

    formats = (ToolCallFormat(GLM_XML, region_start="<tool_calls>", region_end="</tool_calls>",
                              call_start="<tool_call>", call_end="</tool_call>"),)


@ToolParserManager.register_module(["deepseek_v32", "deepseekv32"])
class DeepSeekV32ToolParser(FormatToolParser):
    """DeepSeek V3.2 (DSML): `<｜DSML｜function_calls>\\n<｜DSML｜invoke name="f">\\n<｜DSML｜parameter
    name="k" string="true">v</｜DSML｜parameter>\\n</｜DSML｜invoke>\\n</｜DSML｜function_calls>`;
    `string="false"` values are JSON."""

    formats = (ToolCallFormat(DSML_XML, region_start=DSML + "function_calls>",
                              region_end="</｜DSML｜function_calls>", joiner="\n"),)


@ToolParserManager.register_module(["deepseek_v4", "deepseekv4"])
class DeepSeekV4ToolParser(FormatToolParser):
    """DeepSeek V4: V3.2's DSML inside `<｜DSML｜tool_calls>…</｜DSML｜tool_calls>`."""

    formats = (ToolCallFormat(DSML_XML, region_start=DSML + "tool_calls>",
                              region_end="</｜DSML｜tool_calls>", joiner="\n"),)


@ToolParserManager.register_module("gigachat35")
class GigaChat35ToolParser(FormatToolParser):
    """GigaChat 3.5: DSML-style `<｜GCML｜tool_calls><｜GCML｜invoke name="f"><｜GCML｜parameter
    name="k" string="true">v</｜GCML｜parameter></｜GCML｜invoke></｜GCML｜tool_calls>`."""

    formats = (ToolCallFormat(XmlParameters(name_prefix='<｜GCML｜invoke name="', name_suffix='"',
                                            key_prefix='<｜GCML｜parameter name="', key_suffix='"',
                                            attributes_end=">", key_attributes=' string="{string}"',
                                            value_suffix="</｜GCML｜parameter>",
                                            call_suffix="</｜GCML｜invoke>", grammar_style=""),
                              region_start="<｜GCML｜tool_calls>", region_end="</｜GCML｜tool_calls>",
                              joiner="\n"),)


@ToolParserManager.register_module(["minimax_m2", "minimax-m2"])
class MinimaxM2ToolParser(FormatToolParser):
    """MiniMax-M2: `<minimax:tool_call><invoke name="f"><parameter name="k">v</parameter></invoke>
    </minimax:tool_call>`, several invokes in one block."""

    formats = _invoke_formats("<minimax:tool_call>", "</minimax:tool_call>")


@ToolParserManager.register_module("step3")
class Step3ToolParser(FormatToolParser):
    """Step-3: `<｜tool_calls_begin｜><｜tool_call_begin｜>function<｜tool_sep｜><steptml:invoke name="f">
    <steptml:parameter name="k">v</steptml:parameter></steptml:invoke><｜tool_call_end｜>
    <｜tool_calls_end｜>`."""

    formats = (ToolCallFormat(XmlParameters(name_prefix='<steptml:invoke name="', name_suffix='">',
                                            key_prefix='<steptml:parameter name="',
                                            key_suffix='">', value_suffix="</steptml:parameter>",
                                            call_suffix="</steptml:invoke>", grammar_style=""),
                              region_start="<｜tool_calls_begin｜>", region_end="<｜tool_calls_end｜>",
                              call_start="<｜tool_call_begin｜>function<｜tool_sep｜>",
                              call_end="<｜tool_call_end｜>"),)


@ToolParserManager.register_module("dots")
class DotsToolParser(FormatToolParser):
    """dots: `<dots_function_call>\\n<invoke name="f">\\n<parameter name="k">v</parameter>\\n
    </invoke>\\n</dots_function_call>` (names quoted or not), or a JSON call object inside."""

    formats = _invoke_formats("<dots_function_call>", "</dots_function_call>") + (
        # a JSON object body, `{"name": "f", "arguments"|"parameters": {...}}`, is accepted too
        ToolCallFormat(JsonObject(), region_start="<dots_function_call>",
                       region_end="</dots_function_call>", joiner="\n"),)


@ToolParserManager.register_module("minicpm5")
class MiniCPM5ToolParser(FormatToolParser):
    """MiniCPM5: `<function name="f"><param name="k">v</param></function>` for each call."""

    formats = (ToolCallFormat(XmlParameters(name_prefix="", name_suffix='">',
                                            key_prefix='<param name="', key_suffix='">',
                                            value_suffix="</param>", call_suffix="</function>",
                                            optional_wrapper=("<arguments>", "</arguments>"),
                                            grammar_style=""),
                              call_start='<function name="', joiner="\n"),)


@ToolParserManager.register_module("solar_open2")
class SolarOpen2ToolParser(FormatToolParser):
    """Solar Open 2: `<|tool_call:start|>f\\n<|tool_arg:start|>k<|tool_arg:value|>v<|tool_arg:end|>
    <|tool_call:end|>`."""

    formats = (ToolCallFormat(XmlParameters(name_prefix="", name_suffix="",
                                            key_prefix="<|tool_arg:start|>",
                                            key_suffix="<|tool_arg:value|>",
                                            value_suffix="<|tool_arg:end|>",
                                            call_suffix="<|tool_call:end|>", grammar_style=""),
                              call_start="<|tool_call:start|>", joiner="\n"),)


@ToolParserManager.register_module("kimi_k3")
class KimiK3ToolParser(FormatToolParser):
    """Kimi K3 (XTML): `<|open|>tools<|sep|><|open|>call tool="f" index="1"<|sep|><|open|>argument
    key="k" type="string"<|sep|>v<|close|>argument<|sep|><|close|>call<|sep|><|close|>tools<|sep|>`;
    a non-string `type` makes the value JSON. The visible reply's channel markers are markup."""

    formats = (ToolCallFormat(XmlParameters(name_prefix='<|open|>call tool="', name_suffix='"',
                                            key_prefix='<|open|>argument key="', key_suffix='"',
                                            attributes_end="<|sep|>",
                                            name_attributes=' index="{index}"',
                                            key_attributes=' type="{type}"',
                                            value_suffix="<|close|>argument<|sep|>",
                                            call_suffix="<|close|>call<|sep|>", grammar_style=""),
                              region_start="<|open|>tools<|sep|>", region_end="<|close|>tools<|sep|>",
                              joiner="\n",
                              drop_markers=("<|open|>response<|sep|>", "<|close|>response<|sep|>",
                                            "<|close|>message<|sep|>")),)


@ToolParserManager.register_module(["minimax_m3", "minimax-m3"])
class MinimaxM3ToolParser(FormatToolParser):
    """MiniMax M3: `]<]minimax[>[<tool_call>\\n]<]minimax[>[<invoke name="f">]<]minimax[>[<k>v
    ]<]minimax[>[</k>]<]minimax[>[</invoke>\\n]<]minimax[>[</tool_call>`, arguments as nested tags
    named by their keys (arrays as repeated `<item>`)."""

    formats = (ToolCallFormat(NestedXml(), region_start="]<]minimax[>[<tool_call>",
                              region_end="]<]minimax[>[</tool_call>", joiner="\n"),)


@ToolParserManager.register_module(["muse_glimmer", "muse"])
class MuseGlimmerToolParser(FormatToolParser):
    """MuseGlimmer (ATEM): `<|start|>assistant to=tool<|message|><atem:function_calls>
    <atem:invoke name="f"><atem:parameter name="k">v</atem:parameter></atem:invoke>
    </atem:function_calls><|eom|>`; message headers and ends are markup."""

    formats = (ToolCallFormat(XmlParameters(name_prefix='<atem:invoke name="', name_suffix='">',
                                            key_prefix='<atem:parameter name="', key_suffix='">',
                                            value_suffix="</atem:parameter>",
                                            call_suffix="</atem:invoke>", grammar_style=""),
                              region_start="<atem:function_calls>",
                              region_end="</atem:function_calls>", joiner="\n",
                              drop_markers=("<|eom|>", "<|eot|>"),
                              drop_patterns=(r"(?:<\|start\|>assistant)?[ \t]*to=[^\s<]{1,64}"
                                             r"<\|message\|>",)),)
