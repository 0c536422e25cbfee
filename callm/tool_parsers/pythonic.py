"""Pythonic tool calls: the output is a Python list of calls, `[f(a=1, b='x'), g()]`.

Arguments are read with `ast` as literals (str, int, float, bool, None, list, dict); nothing the
model writes is evaluated. Llama 4 may wrap the list in `<|python_start|>…<|python_end|>`.
"""

from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParserManager
from callm.tool_parsers.formats import PythonicCall, ToolCallFormat

PYTHONIC = ToolCallFormat(PythonicCall(), bare="output_start", list_wrapped=True)
LLAMA4_PYTHONIC = ToolCallFormat(PythonicCall(), region_start="<|python_start|>",
                                 region_end="<|python_end|>", bare="output_start",
                                 list_wrapped=True)


@ToolParserManager.register_module("pythonic")
class PythonicToolParser(FormatToolParser):
    """Llama 3.2 (pythonic template), ToolACE: the output is `[f(a=1, b='x'), g()]`."""

    formats = (PYTHONIC,)


@ToolParserManager.register_module("llama4_pythonic")
class Llama4PythonicToolParser(FormatToolParser):
    """Llama 4: `<|python_start|>[f(a=1), g()]<|python_end|>`, the tags optional."""

    formats = (LLAMA4_PYTHONIC,)


@ToolParserManager.register_module("olmo3")
class Olmo3ToolParser(FormatToolParser):
    """OLMo 3: `<function_calls>f(a=1)\\ng(b=2)</function_calls>`, one call per line."""

    formats = (ToolCallFormat(PythonicCall(), region_start="<function_calls>",
                              region_end="</function_calls>", joiner="\n"),)


@ToolParserManager.register_module("lfm2")
class Lfm2ToolParser(FormatToolParser):
    """LFM2: `<|tool_call_start|>[f(a=1), g()]<|tool_call_end|>`."""

    formats = (ToolCallFormat(PythonicCall(), region_start="<|tool_call_start|>",
                              region_end="<|tool_call_end|>", list_wrapped=True),)
