"""DeepSeek V3 / R1-0528 and V3.1: name, then JSON arguments, between DeepSeek's
full-width-bar markers. (V3.2's DSML markup is in `xml_families`.)"""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import NameThenJson, ToolCallFormat

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
NAME = r"[^\s<`{]+"


@ToolParserManager.register_module(["deepseek_v3", "deepseekv3"])
class DeepSeekV3ToolParser(FormatToolParser):
    """DeepSeek V3 / R1-0528: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{args}\\n```
    <｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`."""

    formats = (ToolCallFormat(NameThenJson(name_pattern=NAME, args_marker="\n```json\n",
                                           args_suffix="\n```"),
                              region_start=CALLS_BEGIN, region_end=CALLS_END,
                              call_start=CALL_BEGIN + "function" + SEP, call_end=CALL_END),)


@ToolParserManager.register_module(["deepseek_v31", "deepseekv31"])
class DeepSeekV31ToolParser(FormatToolParser):
    """DeepSeek V3.1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{args}<｜tool▁call▁end｜>…
    <｜tool▁calls▁end｜>`."""

    formats = (ToolCallFormat(NameThenJson(name_pattern=NAME, args_marker=SEP),
                              region_start=CALLS_BEGIN, region_end=CALLS_END,
                              call_start=CALL_BEGIN, call_end=CALL_END),)
