"""Declarative descriptions of how model families write tool calls.

One `ToolCallFormat` says where the tool-call markup starts and ends and how each call's name
and arguments are encoded. The same description drives non-streaming parsing, streaming
(`markup_stream.MarkupStream`) and, for `tool_choice=required`/named and strict tools, the
grammar that makes a model write exactly this markup. A parser family is a tuple of formats
tried in order at the same position: the first is the canonical one a grammar produces, the
others accept variants models drift into.

The shape every format shares::

    [region_start] ["["] [call_start] CALL [call_end] ((","|separator) [call_start] CALL [call_end])* ["]"] [region_end]
"""

from dataclasses import dataclass
from typing import Literal

import regex


@dataclass(frozen=True)
class JsonObject:
    """A call is one JSON object: `{"name": "f", "arguments": {...}}`."""

    name_keys: tuple[str, ...] = ("name",)
    args_keys: tuple[str, ...] = ("arguments", "parameters")
    first_char = "{"


@dataclass(frozen=True)
class NameThenJson:
    """A call is the function name as plain text, optional markers, then the args object.

    `get_weather{"city": "Paris"}` or `get_weather[CALL_ID]abc123XYZ[ARGS]{"city": "Paris"}`.
    """

    name_pattern: str = r"[A-Za-z_][\w.\-]*"
    id_marker: str = ""  # marker before a model-written call id, e.g. "[CALL_ID]"
    args_marker: str = ""  # optional marker between name (or id) and arguments, e.g. "[ARGS]"
    first_char = "A-Za-z_"


@dataclass(frozen=True)
class PythonicCall:
    """A call is a Python call with literal keyword arguments: `f(a=1, b='x')`, read with `ast`."""

    first_char = "A-Za-z_"


Encoding = JsonObject | NameThenJson | PythonicCall


@dataclass(frozen=True)
class ToolCallFormat:
    """Where tool calls sit in a model's output, and how each one is written."""

    encoding: Encoding
    region_start: str = ""  # marker before all calls, e.g. "[TOOL_CALLS]", "<|python_tag|>"
    region_end: str = ""  # marker after all calls, e.g. "<|python_end|>"
    call_start: str = ""  # marker before each call, e.g. "<tool_call>"
    call_end: str = ""  # marker after each call, e.g. "</tool_call>"
    list_wrapped: bool = False  # calls written as a list: [call, call]
    separator: str = ""  # between calls when not a list, e.g. ";"
    # The region may also open with no marker: at the very start of the output, or at any line
    # start (for models that drop their tags).
    bare: Literal["", "output_start", "line_start"] = ""
    # Accept a call only when its name is one of the request's tools (used for bare variants,
    # so ordinary JSON in an answer stays content).
    known_names_only: bool = False
    # Layout a grammar writes (tool_choice=required/named, strict tools); parsing accepts any
    # whitespace in these places. `call_padding` sits inside each call's markers, e.g. "\n" for
    # `<tool_call>\n{...}\n</tool_call>`; `joiner` goes between calls (None: ", " in a list,
    # `separator` + " ", "\n" after a call marker, else nothing).
    call_padding: str = ""
    joiner: str | None = None

    @property
    def call_joiner(self) -> str:
        """The text a grammar writes between two calls."""
        if self.joiner is not None:
            return self.joiner
        if self.list_wrapped:
            return ", "
        if self.separator:
            return self.separator + " "
        return "\n" if self.call_start else ""

    @property
    def marker(self) -> str:
        """The literal text that opens this format's markup ("" if it only opens bare)."""
        return self.region_start or self.call_start

    @property
    def first_char_class(self) -> str:
        """Regex class of the first character after the opening marker."""
        return "\\[" if self.list_wrapped else self.encoding.first_char

    def opener_pattern(self) -> str:
        """A regex for the places this format's markup may begin."""
        alternatives = [regex.escape(self.marker)] if self.marker else []
        lookahead = f"(?=[{self.first_char_class}])"
        if self.bare == "output_start":
            alternatives.append(r"\A\s*" + lookahead)
        elif self.bare == "line_start":
            alternatives.append(r"(?m:^)[ \t]*" + lookahead)
        if not alternatives:
            raise ValueError("a tool-call format needs a start marker or a bare opening")
        return "|".join(f"(?:{a})" for a in alternatives)
