"""Declarative descriptions of how model families write tool calls.

One `ToolCallFormat` says where the tool-call markup starts and ends and how each call's name
and arguments are encoded. The same description drives non-streaming parsing, streaming
(`markup_stream.MarkupStream`) and, for `tool_choice=required`/named and strict tools, the
grammar that makes a model write exactly this markup. A parser family is a tuple of formats
tried in order at the same position: the first is the canonical one a grammar produces, the
others accept variants models drift into.

The shape every format shares::

    [region_start] ["["] [call_start] CALL [call_end] ((","|separator) [call_start] CALL [call_end])* ["]"] [region_end]

CALL is one of the encodings below: a JSON object, a name then a JSON object, a Python call,
markup parameters whose text values the tool's JSON Schema types (`XmlParameters`), or a
key/value DSL with its own string quotes (`DslCall`). Gpt-oss's Harmony messages are their own
encoding (`HarmonyMessage`): a call is a message addressed to a function.
"""

from dataclasses import dataclass
from typing import Literal

import regex


@dataclass(frozen=True)
class JsonObject:
    """A call is one JSON object: `{"name": "f", "arguments": {...}}`."""

    name_keys: tuple[str, ...] = ("name",)
    args_keys: tuple[str, ...] = ("arguments", "parameters")
    id_key: str = ""  # a key holding a model-written call id, e.g. Cohere's "tool_call_id"
    # Apertus writes `{"get_weather": {...}}`: the only key is the name, its value the arguments.
    name_is_key: bool = False
    first_char = "{"


@dataclass(frozen=True)
class NameThenJson:
    """A call is the function name as plain text, optional markers, then the args object.

    `get_weather{"city": "Paris"}`, `get_weather[CALL_ID]abc123XYZ[ARGS]{"city": "Paris"}`,
    Kimi's `functions.get_weather:0 <|tool_call_argument_begin|>{...}` (the name is the pattern's
    `name` group; with `id_in_name` the whole match is the model-written call id).
    """

    name_pattern: str = r"[A-Za-z_][\w.\-]*"
    id_marker: str = ""  # marker before a model-written call id, e.g. "[CALL_ID]"
    # Optional marker between name (or id) and arguments, e.g. "[ARGS]", written as given by a
    # grammar; parsing accepts any whitespace around it.
    args_marker: str = ""
    args_suffix: str = ""  # optional text after the arguments, e.g. "\n```" after a fence
    id_in_name: bool = False
    name_template: str = "{name}"  # how a grammar writes the name ("{index}": the call's index)
    first_char = "A-Za-z_"


@dataclass(frozen=True)
class PythonicCall:
    """A call is a Python call with literal keyword arguments: `f(a=1, b='x')`, read with `ast`."""

    first_char = "A-Za-z_"


@dataclass(frozen=True)
class XmlParameters:
    """A call is a name and `parameter -> text` pairs in markup; each text value becomes the type
    the tool's JSON Schema declares for it (see `markup_stream.typed_value`).

    Qwen3-Coder `<function=f><parameter=k>v</parameter></function>` (the defaults), MiniMax
    `<invoke name="f"><parameter name="k">v</parameter></invoke>`, GLM
    `f<arg_key>k</arg_key><arg_value>v</arg_value>` (no name markers: the name runs to the first
    whitespace or `<`). A value also ends where the next parameter or the call's end begins, as
    models sometimes drop the closing tag. One newline around a value is layout, not value.
    """

    name_prefix: str = "<function="
    name_suffix: str = ">"
    key_prefix: str = "<parameter="
    key_suffix: str = ">"
    value_prefix: str = ""  # e.g. "<arg_value>" after GLM's "</arg_key>"
    # With a quoted name/key (suffix '"'), attributes may follow up to this marker, e.g. DSML's
    # ` string="true">`: a `string="false"` or non-string `type="..."` attribute types the value.
    attributes_end: str = ""
    value_suffix: str = "</parameter>"
    call_suffix: str = "</function>"
    # Tags some models put around all parameters, read and dropped (MiniCPM5's <arguments>).
    optional_wrapper: tuple[str, str] = ("", "")
    # Layout a grammar writes: between name and first parameter, around values, between
    # parameters. Parsing accepts any whitespace between tags.
    padding: str = "\n"
    grammar_style: str = "qwen_xml"  # xgrammar's JSON-schema style for these parameters
    # Attributes a grammar writes before `attributes_end`, after the call's name (Kimi K3's
    # ' index="{index}"': the call's index as the model writes it) and after each key
    # (' string="{string}"': "true" for a text value, else "false"; ' type="{type}"': its JSON
    # type, "number" for integers too).
    name_attributes: str = ""
    key_attributes: str = ""

    @property
    def first_char(self) -> str:
        return regex.escape(self.name_prefix[0]) if self.name_prefix else "A-Za-z_"


@dataclass(frozen=True)
class NestedXml:
    """A call's arguments as tags named by their keys, nested for objects, repeated `<item>`
    tags for arrays (a repeated key makes an array too), every tag behind `namespace`; leaf
    text is typed by the tool's JSON Schema. MiniMax M3:
    `]<]minimax[>[<invoke name="f">]<]minimax[>[<city>Paris]<]minimax[>[</city>]<]minimax[>[</invoke>`.
    """

    namespace: str = "]<]minimax[>["
    name_prefix: str = '<invoke name="'
    name_suffix: str = '">'
    call_suffix: str = "</invoke>"
    item_tag: str = "item"
    grammar_style: str = "minimax_m3_xml"

    @property
    def first_char(self) -> str:
        return regex.escape(self.namespace[0])


@dataclass(frozen=True)
class DslCall:
    """A call is `PREFIX name{key:value,...}`: keys bare, strings between `quote` marks, other
    values bare JSON-like literals, `{...}` objects and `[...]` lists nested in the same syntax.

    Gemma 4 `call:f{city:<|"|>Paris<|"|>,days:3}`, FunctionGemma `call:f{city:<escape>Paris<escape>}`.
    """

    prefix: str = "call:"
    quote: str = '<|"|>'
    grammar_style: str = "gemma"  # xgrammar's JSON-schema style ("": none writes this syntax)

    @property
    def first_char(self) -> str:
        return regex.escape(self.prefix[0]) if self.prefix else "A-Za-z_"


@dataclass(frozen=True)
class HarmonyMessage:
    """gpt-oss Harmony: the output is messages, `[<|start|>assistant][ to=R]<|channel|>C[ to=R]
    [<|constrain|>json]<|message|>BODY<|end|>`. A message whose recipient R is
    `functions.NAME` is a call with BODY as its JSON arguments, ended by `<|call|>`; the bodies
    of other messages are content, their headers are markup."""

    recipient_prefix: str = "functions."
    first_char = "<"


Encoding = (JsonObject | NameThenJson | PythonicCall | XmlParameters | NestedXml | DslCall
            | HarmonyMessage)


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
    # The region may also open with no marker: at the very start of the output, at any line
    # start (for models that drop their tags), or anywhere (models that write calls amid
    # text; use with `known_names_only`).
    bare: Literal["", "output_start", "line_start", "anywhere"] = ""
    # Accept a call only when its name is one of the request's tools (used for bare variants,
    # so ordinary JSON in an answer stays content).
    known_names_only: bool = False
    # Layout a grammar writes (tool_choice=required/named, strict tools); parsing accepts any
    # whitespace in these places. `call_padding` sits inside each call's markers, e.g. "\n" for
    # `<tool_call>\n{...}\n</tool_call>`; `joiner` goes between calls (None: ", " in a list,
    # `separator` + " ", "\n" after a call marker, else nothing).
    call_padding: str = ""
    joiner: str | None = None
    # Markers that are never content: met outside a call they are dropped (Harmony's `<|end|>`).
    # A stray `call_end`/`region_end` right after a call, and a repeated `call_start`, are
    # always dropped.
    drop_markers: tuple[str, ...] = ()
    # The same for markup that varies (regexes): MuseGlimmer's `<|start|>assistant to=R<|message|>`.
    drop_patterns: tuple[str, ...] = ()

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
        alternatives += [regex.escape(m) for m in self.drop_markers] + list(self.drop_patterns)
        lookahead = f"(?=[{self.first_char_class}])"
        if self.bare == "output_start":
            alternatives.append(r"\A\s*" + lookahead)
        elif self.bare == "line_start":
            alternatives.append(r"(?m:^)[ \t]*" + lookahead)
        elif self.bare == "anywhere":
            alternatives.append(lookahead)
        if not alternatives:
            raise ValueError("a tool-call format needs a start marker or a bare opening")
        return "|".join(f"(?:{a})" for a in alternatives)


_JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number",
               type(None): "null", list: "array", dict: "object"}


def write_calls(fmt: ToolCallFormat, calls: list[tuple[str, dict]]) -> str:
    """The markup a model writes for `calls` (name, arguments) in `fmt`'s canonical layout —
    what its parser reads back. Benchmarks and round-trip tests render outputs with it."""
    pad = fmt.call_padding
    bodies = [fmt.call_start + pad + _write_call(fmt.encoding, i, name, args) + pad + fmt.call_end
              for i, (name, args) in enumerate(calls)]
    body = fmt.call_joiner.join(bodies)
    if fmt.list_wrapped:
        body = f"[{body}]"
    if isinstance(fmt.encoding, HarmonyMessage):  # the prompt already opened the message
        return body
    return fmt.region_start + body + fmt.region_end


def _write_call(enc: Encoding, index: int, name: str, args: dict) -> str:
    import json

    if isinstance(enc, JsonObject):
        if enc.name_is_key:
            return json.dumps({name: args}, ensure_ascii=False)
        head = {enc.id_key: str(index)} if enc.id_key else {}
        return json.dumps({**head, enc.name_keys[0]: name, enc.args_keys[0]: args},
                          ensure_ascii=False)
    if isinstance(enc, NameThenJson):
        return (enc.name_template.format(name=name, index=index) + enc.args_marker
                + json.dumps(args, ensure_ascii=False) + enc.args_suffix)
    if isinstance(enc, PythonicCall):
        return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
    if isinstance(enc, XmlParameters):
        pad, attrs = enc.padding, enc.attributes_end
        out = (enc.name_prefix + name + enc.name_suffix
               + enc.name_attributes.replace("{index}", str(index)) + attrs)
        for key, value in args.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            kind = (' string="true"' if isinstance(value, str) else ' string="false"') if attrs else ""
            if enc.key_attributes:
                kind = enc.key_attributes.replace(
                    "{string}", "true" if isinstance(value, str) else "false").replace(
                    "{type}", _JSON_TYPES.get(type(value), "string"))
            out += (pad + enc.key_prefix + key + enc.key_suffix + kind + attrs + enc.value_prefix
                    + pad + text + pad + enc.value_suffix)
        return out + pad + enc.call_suffix
    if isinstance(enc, NestedXml):
        return (enc.namespace + enc.name_prefix + name + enc.name_suffix
                + _write_nested(args, enc) + enc.namespace + enc.call_suffix)
    if isinstance(enc, DslCall):
        return enc.prefix + name + _write_dsl(args, enc.quote)
    if isinstance(enc, HarmonyMessage):
        start = "<|start|>assistant" if index else ""
        return (f"{start}<|channel|>commentary to={enc.recipient_prefix}{name} <|constrain|>json"
                f"<|message|>{json.dumps(args, ensure_ascii=False)}")
    raise TypeError(f"unknown tool-call encoding {enc!r}")


def _write_dsl(value: object, quote: str) -> str:
    import json

    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_write_dsl(v, quote)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_write_dsl(v, quote) for v in value) + "]"
    if isinstance(value, str):
        return quote + value + quote
    return json.dumps(value)


def _write_nested(value: object, enc: NestedXml) -> str:
    import json

    ns = enc.namespace
    if isinstance(value, dict):
        return "".join(f"{ns}<{k}>{_write_nested(v, enc)}{ns}</{k}>" for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"{ns}<{enc.item_tag}>{_write_nested(v, enc)}{ns}</{enc.item_tag}>"
                       for v in value)
    return value if isinstance(value, str) else json.dumps(value)
