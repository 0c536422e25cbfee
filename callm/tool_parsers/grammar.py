"""Tool calls as grammars, derived from the same `ToolCallFormat` the parser reads.

`format_structural_tag(fmt, tools, mode, parallel)` turns a format's declarative description,
the request's tools and the tool choice into one *structural tag* — xgrammar's structural-tag
JSON, used here as the backend-neutral description of a constrained output (each backend in
`callm.engine.structured_output` compiles it: xgrammar natively, llguidance as Lark, outlines as
a regex where the shape allows). The output it allows is written in the model's own markup, so
the parser that reads unconstrained output reads it too:

- `required` (and a named function): the output is nothing but calls — the format's region
  and call markers, each call's name one of the tools, its arguments valid against that tool's
  JSON Schema; one call when not `parallel`.
- `auto` (strict tools): free text, until the model writes the format's start marker; from
  there the rest of the call (or region of calls) is held to the same grammar, then free text
  resumes. Strict tools get their schema; non-strict tools any arguments. This is xgrammar's
  `triggered_tags` (a `dispatch` where the region has no end marker), llguidance's lazy lexemes.

How each encoding's arguments are written:

- JSON (`JsonObject`, `NameThenJson`, `HarmonyMessage`): the schema's JSON with fixed
  whitespace, `{"a": 1, "b": [2, 3]}`. Parts the model writes itself (Kimi's call index in
  `functions.f:3`, Cohere's `"tool_call_id"`, Mistral's `[CALL_ID]`) are held to a pattern.
- Markup parameters (`XmlParameters`): one tag per property of the schema, in declared order,
  required ones mandatory, each followed by the format's `padding`: text values (string, or
  untyped — what the parser keeps as text) as free text that cannot contain the markers where
  the parser ends a value (an `enum` as its choices, a `pattern` as a regex, length bounds as
  a run of characters that open no marker), other values as JSON (fixed whitespace), which the
  parser types back; key attributes as the format declares (`string="true"`, `type="number"`).
  xgrammar's XML styles (`_XML_STYLES`: Qwen, MiniMax, GLM, DeepSeek DSML, Kimi K3) are used
  only for schemas beyond that (e.g. `anyOf` at the top): a style lets one whitespace
  character through around an enum or length-bounded string, which the parser keeps, so the
  value would no longer match the schema.
- MiniMax M3's nested tags (`NestedXml`): xgrammar's `minimax_m3_xml` style (no string
  patterns, formats or length bounds there).
- Gemma 4's DSL (`DslCall` with `<|"|>` quotes): xgrammar's `gemma` style, with the same DSL
  built from the schema as its portable form. Other quotes (FunctionGemma's `<escape>`): that
  built DSL, recursively (strings quoted, scalars as JSON, `{k:v}` objects, `[...]` lists).
- Pythonic calls: `f(a="x", b=3, c=True)`, one keyword per property, JSON values (which the
  parser reads as Python literals), `True`/`False`/`None` for top-level booleans and null.
- Harmony (gpt-oss): `<|channel|>commentary to=functions.f <|constrain|>json<|message|>{...}
  <|call|>`, further calls after `<|start|>assistant` (the prompt opened the first message).

Backends: xgrammar compiles every node here. A node in an xgrammar style carries, where the
schema allows, its `portable` equivalent built from plain nodes, which llguidance (as Lark, free
text as lazy lexemes) and outlines (as a regex: free text then holds no character that opens
a marker) compile instead; without one they answer a StructuredOutputError naming xgrammar.

A schema that a built markup cannot express (e.g. `anyOf` at the top level of the parameters,
or Python-call keywords that are not identifiers) raises `UnsupportedToolFormat` naming it.

`plan_tool_choice` decides, per request, which parser reads the output and which constraint (if
any) the engine enforces. With a parser whose format cannot be written by a grammar,
`required`/named raise `ToolChoiceUnsupported` (the server answers 400 naming the parser); no
other format's grammar is ever substituted. Only without a parser — none configured, or a
hand-written plugin parser that declares no format (it may override `tool_call_grammar`) — do
`required`/named use the Hermes encoding (`<tool_call>\\n{"name": ..., "arguments": {...}}\\n
</tool_call>`), read by the Hermes parser. Strict tools in `auto` mode that cannot be enforced
(a format with no start marker to trigger on, or no format) are left unconstrained, with a
logged note.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from callm.tool_parsers.formats import (DslCall, HarmonyMessage, JsonObject, NameThenJson,
                                        NestedXml, PythonicCall, ToolCallFormat, XmlParameters)

logger = logging.getLogger(__name__)

Mode = Literal["required", "auto"]
# The arguments of a tool declared without `parameters`: an empty object (OpenAI semantics).
NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}
ANY_OBJECT = {"type": "object"}

# What the model writes itself where a format has a placeholder: a call's index (Kimi's
# `functions.f:0`, Kimi K3's `index="1"`, Cohere's "tool_call_id"), a Mistral call id.
INDEX_PATTERN = r"[0-9]{1,6}"
CALL_ID_PATTERN = r"[A-Za-z0-9]{9}"
_KEY_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"  # a key the model invents (schemas without properties)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*", re.ASCII)
# Harmony messages after the first one start with this header (gpt-oss).
HARMONY_MESSAGE_START = "<|start|>assistant"

# xgrammar's XML styles, by the parameter markup they write: (key_prefix, key_suffix,
# attributes_end, value_prefix, value_suffix). A style writes its own key attributes (DSML's
# ` string="true"`, Kimi K3's ` type="string"`).
_XML_STYLES = {
    "qwen_xml": ("<parameter=", ">", "", "", "</parameter>"),
    "minimax_xml": ('<parameter name="', '">', "", "", "</parameter>"),
    "glm_xml": ("<arg_key>", "</arg_key>", "", "<arg_value>", "</arg_value>"),
    "deepseek_xml": ('<｜DSML｜parameter name="', '"', ">", "", "</｜DSML｜parameter>"),
    "deepseek_v4_1_xml": ('<｜DSML｜ parameter name="', '"', ">", "", "</｜DSML｜ parameter>"),
    "kimi_k3_xml": ('<|open|>argument key="', '"', "<|sep|>", "", "<|close|>argument<|sep|>"),
}
_GEMMA_QUOTE = '<|"|>'
_STRING_BOUNDS = ("pattern", "format", "minLength", "maxLength")
# Whitespace a style allows in each place (xgrammar's own default is unbounded).
_STYLE_WHITESPACE = 1


class UnsupportedToolFormat(ValueError):
    """The format cannot be written by a grammar (in this mode, or for these tools)."""


class ToolChoiceUnsupported(ValueError):
    """tool_choice required/named cannot be enforced in the tool parser's format; the server
    answers 400 with this message."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters: dict
    strict: bool = False


def tool_specs(tools: Sequence[Any] | None) -> list[ToolSpec]:
    """OpenAI tools (pydantic `ChatCompletionToolsParam` or plain dicts) -> ToolSpecs."""
    specs = []
    for tool in tools or []:
        fn = tool.function if hasattr(tool, "function") else tool.get("function", tool)
        get = (lambda k, f=fn: getattr(f, k, None)) if not isinstance(fn, dict) else fn.get
        parameters = get("parameters")
        specs.append(ToolSpec(get("name"), parameters if parameters is not None else NO_PARAMETERS,
                              bool(get("strict"))))
    return specs


# --------------------------------------------------------------------------- nodes

def _const(text: str) -> dict:
    return {"type": "const_string", "value": text}


def _regex(pattern: str) -> dict:
    return {"type": "regex", "pattern": pattern}


def _json(schema) -> dict:
    return {"type": "json_schema", "json_schema": schema}


def _tag(begin: str, content: dict, end: str) -> dict:
    return {"type": "tag", "begin": begin, "content": content, "end": end}


def _optional(node: dict) -> dict:
    return {"type": "optional", "content": node}


def _seq(*elements: dict) -> dict:
    parts: list[dict] = []
    for e in elements:
        if e["type"] == "sequence":
            parts.extend(e["elements"])
        elif not (e["type"] == "const_string" and not e["value"]):
            parts.append(e)
    merged: list[dict] = []  # adjacent constants as one
    for p in parts:
        if merged and p["type"] == "const_string" and merged[-1]["type"] == "const_string":
            merged[-1] = _const(merged[-1]["value"] + p["value"])
        else:
            merged.append(p)
    if not merged:
        return _const("")
    return merged[0] if len(merged) == 1 else {"type": "sequence", "elements": merged}


def _one_of(elements: list[dict]) -> dict:
    return elements[0] if len(elements) == 1 else {"type": "or", "elements": elements}


def _as_tag(parts: list[dict], end: str) -> dict:
    """A tag from a sequence of parts: its leading constant text is the tag's begin."""
    node = _seq(*parts)
    elements = node["elements"] if node["type"] == "sequence" else [node]
    begin = ""
    if elements and elements[0]["type"] == "const_string":
        begin, elements = elements[0]["value"], elements[1:]
    return _tag(begin, _seq(*elements), end)


def _templated(template: str, **fields: str) -> list[dict]:
    """`template` with its fields filled in; "{index}" becomes the model-written index."""
    for key, value in fields.items():
        template = template.replace("{" + key + "}", value)
    pieces = template.split("{index}")
    parts = [_const(pieces[0])]
    for piece in pieces[1:]:
        parts += [_regex(INDEX_PATTERN), _const(piece)]
    return parts


def _members(items: list[tuple[dict, bool]], separator: str) -> dict:
    """Items in order, each (node, required), `separator` between those written."""
    if not items:
        return _const("")
    if not separator:
        return _seq(*(node if required else _optional(node) for node, required in items))
    sep = _const(separator)

    def after(k: int) -> list[dict]:
        return [_seq(sep, n) if r else _optional(_seq(sep, n)) for n, r in items[k + 1:]]

    first = next((i for i, (_, r) in enumerate(items) if r), None)
    if first is not None:
        return _seq(*(_optional(_seq(n, sep)) for n, _ in items[:first]), items[first][0],
                    *after(first))
    # all optional: nothing, or the first one written then any of the rest
    return _optional(_one_of([_seq(n, *after(k)) for k, (n, _) in enumerate(items)]))


# --------------------------------------------------------------------------- schemas

def _resolve(schema, root: dict, depth: int = 0):
    """`schema` with a local `$ref` (into the parameters' `$defs`/`definitions`) followed."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if not ref.startswith("#/") or depth > 32:
            raise UnsupportedToolFormat(f"the schema reference {ref!r} cannot be followed")
        target = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise UnsupportedToolFormat(f"the schema reference {ref!r} does not resolve")
            target = target[part]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **extra} if isinstance(target, dict) and extra else target
        depth += 1
    return schema


def _with_definitions(schema, root: dict):
    """A sub-schema compiled on its own keeps the root's definitions, so `$ref`s resolve."""
    if not isinstance(schema, dict):
        return {} if schema is True else schema
    defs = {k: root[k] for k in ("$defs", "definitions") if k in root and k not in schema}
    return {**schema, **defs} if defs else schema


_TYPE_OF = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null",
            list: "array", dict: "object"}


def _types(schema, root: dict) -> set[str]:
    """The JSON types a schema allows (empty: any), as the parser reads a markup value."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    types = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    values = list(schema.get("enum") or []) + ([schema["const"]] if "const" in schema else [])
    types |= {_TYPE_OF.get(type(v), "string") for v in values}
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            sub_types = _types(sub, root)
            if not sub_types:
                return set()
            types |= sub_types
    return types


def _is_text(schema, root: dict) -> bool:
    """A markup value written as plain text: untyped, or a string is allowed (the parser
    keeps such values as text)."""
    types = _types(schema, root)
    return not types or "string" in types


def _object_parts(schema, root: dict, what: str) -> tuple[list[tuple[str, Any, bool]], bool]:
    """The declared properties of an object schema as (key, schema, required), and whether
    other keys may be written instead (a schema listing none)."""
    schema = _resolve(schema, root)
    if schema is True or schema == {}:
        return [], True
    if not isinstance(schema, dict):
        raise UnsupportedToolFormat(f"{what}: the parameters schema is not an object schema")
    for key in ("anyOf", "oneOf", "allOf", "not", "if", "patternProperties"):
        if key in schema:
            raise UnsupportedToolFormat(f"{what}: {key!r} at the top of an object schema "
                                        "cannot be written as markup parameters")
    kind = schema.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise UnsupportedToolFormat(f"{what}: the parameters schema is not an object schema")
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return [], schema.get("additionalProperties", True) is not False
    required = set(schema.get("required") or [])
    return [(k, v, k in required) for k, v in properties.items()], False


# --------------------------------------------------------------------------- markup values

def _first_chars(markers: Sequence[str]) -> str:
    return "".join(sorted({re.escape(m[0]) for m in markers if m}))


def _text_value(schema, root: dict, ends: Sequence[str]) -> dict:
    """A text value (tag content) that cannot contain any of `ends` (the markers at which the
    parser's value ends): a string enum as its choices, a `pattern` as a regex, bounded
    lengths as a run of characters that open no marker, else free text."""
    schema = _resolve(schema, root)
    schema = schema if isinstance(schema, dict) else {}
    choices = list(schema.get("enum") or []) + ([schema["const"]] if "const" in schema else [])
    texts = [c for c in choices if isinstance(c, str) and not any(e in c for e in ends if e)]
    if choices:
        if not texts:
            raise UnsupportedToolFormat("an enum with no text choice cannot be written as text")
        return _one_of([_const(t) for t in texts])
    if isinstance(schema.get("pattern"), str):
        pattern = schema["pattern"]
        pattern = pattern[1:] if pattern.startswith("^") else pattern
        pattern = pattern[:-1] if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
        return _regex(pattern)
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) or isinstance(high, int):
        chars = _first_chars(ends)
        char = f"[^{chars}]" if chars else r"[\s\S]"
        return _regex(f"{char}{{{int(low or 0)},{'' if high is None else int(high)}}}")
    return {"type": "any_text", "excludes": [e for e in ends if e]}


def _attributes(template: str, text: bool, schema, root: dict) -> str:
    """A key's attributes: `{string}` "true"/"false", `{type}` the value's JSON type."""
    if not template:
        return ""
    if text:
        kind = "string"
    else:
        types = sorted(_types(schema, root) - {"null"}) or ["null"]
        kind = "number" if types[0] == "integer" else types[0]  # as Kimi K3 writes it
    return template.replace("{string}", "true" if text else "false").replace("{type}", kind)


def _xml_style(enc: XmlParameters) -> str:
    """The xgrammar style that writes exactly this parameter markup ("" if none)."""
    markup = (enc.key_prefix, enc.key_suffix, enc.attributes_end, enc.value_prefix,
              enc.value_suffix)
    candidates = [enc.grammar_style] + list(_XML_STYLES)
    for style in candidates:
        if _XML_STYLES.get(style) == markup and style in _xgrammar_styles():
            return style
    return ""


@cache
def _xgrammar_styles() -> frozenset[str]:
    """The JSON-schema styles the installed xgrammar compiles."""
    try:
        from typing import get_args

        from xgrammar.structural_tag import JSONSchemaFormat

        return frozenset(get_args(JSONSchemaFormat.model_fields["style"].annotation))
    except Exception:  # not installed, or another layout: the styles of xgrammar 0.2.8
        return frozenset({"json", "qwen_xml", "minimax_xml", "deepseek_xml", "glm_xml", "gemma"})


def _styled(schema, style: str, excludes: Sequence[str] = (), portable=None) -> dict:
    """Arguments in one of xgrammar's styles. `excludes`: markers text values must not contain
    (where the parser would end them) — unless a string has length bounds, which xgrammar
    does not enforce together with exclusions (and the schema must hold). `portable()`: the
    same markup built from plain nodes, kept as the node's "portable" for the backends that
    have no styles (absent where the schema is beyond it)."""
    node = {"type": "json_schema", "json_schema": schema, "style": style,
            "max_whitespace_cnt": _STYLE_WHITESPACE}
    excludes = [e for e in excludes if e and e.strip() == e]
    if excludes and not _has_key(schema, ("minLength", "maxLength")):
        node["excludes"] = excludes
    if portable is not None:
        try:
            node["portable"] = portable()
        except UnsupportedToolFormat:
            pass
    return node


def _has_key(schema, keys: tuple[str, ...], names: bool = False) -> bool:
    """Whether a (sub)schema uses one of the keywords `keys` (`names`: `schema` maps names,
    e.g. `properties`, to schemas)."""
    if isinstance(schema, list):
        return any(_has_key(v, keys) for v in schema)
    if not isinstance(schema, dict):
        return False
    if not names and any(k in schema for k in keys):
        return True
    return any(_has_key(v, keys, not names and k in _SCHEMA_MAPS) for k, v in schema.items())


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _xml_parameters(enc: XmlParameters, schema, tool: str) -> dict:
    """Markup parameters built from the schema: one tag per property, each followed by
    `padding` (the call's begin ends with it too)."""
    root = schema if isinstance(schema, dict) else {}
    what = f"tool {tool!r}"
    if not enc.value_suffix:
        raise UnsupportedToolFormat("markup parameters without a closing tag (value_suffix) "
                                    "cannot be written by a grammar")
    ends = [enc.value_suffix, enc.key_prefix, enc.call_suffix]
    excludes = [e for e in ends[1:] if e]
    properties, any_keys = _object_parts(schema, root, what)
    items = []
    for key, sub, required in properties:
        if any(m and m in key for m in (enc.key_suffix, enc.attributes_end, "\n")):
            raise UnsupportedToolFormat(f"{what}: the property name {key!r} cannot be written "
                                        "in this markup")
        text = _is_text(sub, root)
        head = (enc.key_prefix + key + enc.key_suffix
                + _attributes(enc.key_attributes, text, sub, root) + enc.attributes_end
                + enc.value_prefix)
        value = _text_value(sub, root, ends) if text else _json(_with_definitions(sub, root))
        if enc.padding and value["type"] != "any_text":  # layout around a value is optional
            pad = _optional(_const(enc.padding))  # (free text may hold it anyway)
            value = _seq(pad, value, pad)
        items.append((_tag(head, value, enc.value_suffix + enc.padding), required))
    if any_keys:  # keys the model chooses, text values
        head = _seq(_regex(_KEY_PATTERN),
                    _const(enc.key_suffix + _attributes(enc.key_attributes, True, {}, root)
                           + enc.attributes_end + enc.value_prefix))
        one = _tag(enc.key_prefix, _seq(head, {"type": "any_text", "excludes": excludes}),
                   enc.value_suffix + enc.padding)
        return {"type": "star", "content": one}
    return _members(items, "")


# ----- the DSL (`call:f{key:value,...}`) built from the schema

_DSL_SCALARS = ("integer", "number", "boolean", "null")


def _dsl_key(key: str, enc: DslCall) -> str:
    return key if _IDENTIFIER.fullmatch(key) else enc.quote + key + enc.quote


def _dsl_literal(value, enc: DslCall) -> str:
    if isinstance(value, str):
        return enc.quote + value + enc.quote
    if isinstance(value, dict):
        return "{" + ",".join(_dsl_key(k, enc) + ":" + _dsl_literal(v, enc)
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dsl_literal(v, enc) for v in value) + "]"
    return json.dumps(value)


def _dsl_value(schema, root: dict, enc: DslCall, what: str, depth: int = 0) -> dict:
    if depth > 12:
        raise UnsupportedToolFormat(f"{what}: the schema nests too deeply for the DSL grammar")
    schema = _resolve(schema, root)
    if schema is True or schema == {} or not isinstance(schema, dict):
        return _dsl_any(enc)
    choices = list(schema.get("enum") or []) + ([schema["const"]] if "const" in schema else [])
    if choices:
        return _one_of([_const(_dsl_literal(c, enc)) for c in choices])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            base = {k: v for k, v in schema.items() if k != key}
            return _one_of([_dsl_value({**base, **_resolve(s, root)} if isinstance(
                _resolve(s, root), dict) else s, root, enc, what, depth + 1)
                for s in schema[key]])
    if "allOf" in schema or "not" in schema:
        raise UnsupportedToolFormat(f"{what}: 'allOf'/'not' cannot be written in the DSL")
    kind = schema.get("type")
    if isinstance(kind, list):
        return _one_of([_dsl_value({**schema, "type": t}, root, enc, what, depth + 1)
                        for t in kind])
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            return _dsl_any(enc)
    if kind == "string":
        return _tag(enc.quote, _text_value(schema, root, [enc.quote]), enc.quote)
    if kind in _DSL_SCALARS:
        return _json(_with_definitions(schema, root))  # scalars: the same text as JSON
    if kind == "object":
        properties, any_keys = _object_parts(schema, root, what)
        if any_keys:
            member = _seq(_regex(_KEY_PATTERN), _const(":"), _dsl_any(enc))
            return _seq(_const("{"), _optional(_seq(member, {"type": "star", "content": _seq(
                _const(","), member)})), _const("}"))
        items = [(_seq(_const(_dsl_key(k, enc) + ":"),
                       _dsl_value(s, root, enc, what, depth + 1)), r)
                 for k, s, r in properties]
        return _seq(_const("{"), _members(items, ","), _const("}"))
    if kind == "array":
        item_schema = schema.get("items", {})
        if "prefixItems" in schema or isinstance(item_schema, list):
            raise UnsupportedToolFormat(f"{what}: tuple arrays cannot be written in the DSL")
        item = _dsl_value(item_schema, root, enc, what, depth + 1)
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        rest_max = -1 if high is None else max(int(high) - 1, 0)
        more = {"type": "repeat", "min": max(low - 1, 0), "max": rest_max,
                "content": _seq(_const(","), item)}
        items = _seq(item, more) if high is None or int(high) > 1 else item
        if high is not None and int(high) == 0:
            return _const("[]")
        return _seq(_const("["), items if low > 0 else _optional(items), _const("]"))
    raise UnsupportedToolFormat(f"{what}: the JSON type {kind!r} cannot be written in the DSL")


def _dsl_any(enc: DslCall) -> dict:
    """Any scalar (nested structures need a schema)."""
    return _one_of([_tag(enc.quote, {"type": "any_text", "excludes": []}, enc.quote),
                    _json({"type": ["number", "boolean", "null"]})])


# ----- Python calls `f(a=1, b="x")`

def _python_value(schema, root: dict) -> dict:
    resolved = _resolve(schema, root)
    if isinstance(resolved, dict) and "enum" not in resolved and "const" not in resolved:
        if resolved.get("type") == "boolean":
            return _one_of([_const("True"), _const("False")])
        if resolved.get("type") == "null":
            return _const("None")
    return _json(_with_definitions(schema, root))  # JSON: Python literals the parser reads


def _python_arguments(schema, tool: str) -> dict:
    root = schema if isinstance(schema, dict) else {}
    what = f"tool {tool!r}"
    properties, any_keys = _object_parts(schema, root, what)
    if any_keys:
        member = _seq(_regex(_KEY_PATTERN), _const("="), _json({}))
        return _optional(_seq(member, {"type": "star", "content": _seq(_const(", "), member)}))
    items = []
    for key, sub, required in properties:
        if not _IDENTIFIER.fullmatch(key):
            raise UnsupportedToolFormat(f"{what}: the property name {key!r} is not a Python "
                                        "identifier, so it cannot be a keyword argument")
        items.append((_seq(_const(key + "="), _python_value(sub, root)), required))
    return _members(items, ", ")


# --------------------------------------------------------------------------- one call

def _call_tag(fmt: ToolCallFormat, tool: ToolSpec, schema: dict) -> dict:
    """One call of `tool`, markers included: begin (up to the arguments), arguments, end."""
    enc, pad = fmt.encoding, fmt.call_padding
    start = _const(fmt.call_start + pad)
    close = pad + fmt.call_end
    name = tool.name
    if isinstance(enc, JsonObject):
        args = _json(schema)
        if enc.name_is_key:
            return _as_tag([start, _const(f"{{{json.dumps(name, ensure_ascii=False)}: "), args],
                           "}" + close)
        head = []
        if enc.id_key:  # the model's own call id first, as it writes it
            head = [_const(f'{{"{enc.id_key}": "'), _regex(INDEX_PATTERN), _const('", ')]
        else:
            head = [_const("{")]
        return _as_tag([start, *head, _const(
            f'"{enc.name_keys[0]}": {json.dumps(name, ensure_ascii=False)}, '
            f'"{enc.args_keys[0]}": '), args], "}" + close)
    if isinstance(enc, NameThenJson):
        parts = [start, *_templated(enc.name_template, name=name)]
        if enc.id_marker:
            parts += [_const(enc.id_marker), _regex(CALL_ID_PATTERN)]
        parts += [_const(enc.args_marker), _json(schema)]
        return _as_tag(parts, enc.args_suffix + close)
    if isinstance(enc, PythonicCall):
        return _as_tag([start, _const(name + "("), _python_arguments(schema, name)], ")" + close)
    if isinstance(enc, XmlParameters):
        parts = [start, _const(enc.name_prefix + name + enc.name_suffix),
                 *_templated(enc.name_attributes), _const(enc.attributes_end)]
        parts.append(_const(enc.padding))
        try:
            parts.append(_xml_parameters(enc, schema, name))
        except UnsupportedToolFormat:
            # beyond the built parameters (e.g. `anyOf` at the top): the style, if one writes
            # this markup (it lets whitespace around a text value through, see the docstring)
            style = _xml_style(enc)
            if not style:
                raise
            parts.append(_styled(schema, style, [enc.key_prefix, enc.call_suffix]))
        return _as_tag(parts, enc.call_suffix + close)
    if isinstance(enc, NestedXml):
        style = enc.grammar_style
        if style not in _xgrammar_styles() or (enc.namespace, enc.item_tag) != (
                "]<]minimax[>[", "item"):
            raise UnsupportedToolFormat("nested markup parameters are written only by "
                                        "xgrammar's minimax_m3_xml style (MiniMax M3's tags)")
        if _has_key(schema, _STRING_BOUNDS):
            raise UnsupportedToolFormat(
                f"tool {name!r}: string patterns, formats and length bounds cannot be held in "
                "MiniMax M3's nested tags (xgrammar's minimax_m3_xml style)")
        return _as_tag([start, _const(enc.namespace + enc.name_prefix + name + enc.name_suffix),
                        _styled(schema, style)], enc.namespace + enc.call_suffix + close)
    if isinstance(enc, DslCall):
        parts = [start, _const(enc.prefix + name)]
        root = schema if isinstance(schema, dict) else {}
        built = lambda: _dsl_value(schema, root, enc, f"tool {name!r}")  # noqa: E731
        if enc.quote == _GEMMA_QUOTE and "gemma" in _xgrammar_styles():
            return _as_tag([*parts, _styled(schema, "gemma", (), built)], close)
        return _as_tag([*parts, built()], close)
    if isinstance(enc, HarmonyMessage):
        return _as_tag([_const(f"<|channel|>commentary to={enc.recipient_prefix}{name} "
                               "<|constrain|>json<|message|>"), _json(schema)], fmt.call_end)
    raise UnsupportedToolFormat(f"{type(enc).__name__} calls have no grammar")


def _calls(tags: list[dict], joiner: str, parallel: bool) -> dict:
    """At least one call; exactly one unless `parallel`."""
    if not parallel:
        return _one_of(tags)
    return {"type": "tags_with_separator", "tags": tags, "separator": joiner,
            "at_least_one": True, "stop_after_first": False}


def format_structural_tag(fmt: ToolCallFormat, tools: Sequence[ToolSpec], *, mode: Mode,
                          parallel: bool = True) -> dict:
    """The structural tag of `fmt`'s calls to `tools` (see the module docstring)."""
    if not tools:
        raise ValueError("a tool-call grammar needs at least one tool")
    if mode not in ("required", "auto"):
        raise ValueError(f"unknown tool-call grammar mode {mode!r}")
    if mode == "required":
        tags = [_call_tag(fmt, t, t.parameters) for t in tools]
    else:
        tags = [_call_tag(fmt, t, t.parameters if t.strict else ANY_OBJECT) for t in tools]
    if isinstance(fmt.encoding, HarmonyMessage):
        return _harmony_tag(fmt, tags, mode, parallel)
    calls = _calls(tags, fmt.call_joiner, parallel)
    if fmt.list_wrapped:
        open_list, close_list = "[", "]"
    else:
        open_list = close_list = ""
    if mode == "required":
        body = _seq(_const(open_list), calls, _const(close_list), _const(fmt.region_end))
        full = _seq(_const(fmt.region_start), body)
        if fmt.region_start and fmt.bare:  # the region marker is optional at the start
            full = _one_of([full, body])
        return {"type": "structural_tag", "format": full}
    trigger = fmt.marker
    if not trigger:
        raise UnsupportedToolFormat("the format has no start marker to trigger on in auto mode")
    if not fmt.region_start:  # every call opens with the marker: one lazily triggered tag each
        return {"type": "structural_tag", "format": {
            "type": "triggered_tags", "triggers": [trigger], "tags": tags,
            "at_least_one": False, "stop_after_first": not parallel}}
    begin = fmt.region_start + open_list
    end = close_list + fmt.region_end
    if end:  # the whole region is one triggered tag
        return {"type": "structural_tag", "format": {
            "type": "triggered_tags", "triggers": [trigger],
            "tags": [{"type": "tag", "begin": begin, "content": calls, "end": end}],
            "at_least_one": False, "stop_after_first": not parallel}}
    # A region that just stops (`<|python_tag|>{...}; {...}`): xgrammar wants an end string
    # after unbounded content, so the region is a dispatch rule instead.
    return {"type": "structural_tag", "format": {
        "type": "dispatch", "rules": [[begin, calls]], "loop": parallel}}


def _harmony_tag(fmt: ToolCallFormat, tags: list[dict], mode: Mode, parallel: bool) -> dict:
    """gpt-oss: the generation prompt ends with `<|start|>assistant`, so a call begins at its
    channel; each further message starts with its own `<|start|>assistant`."""
    joiner = fmt.joiner if fmt.joiner is not None else HARMONY_MESSAGE_START
    if mode == "required":
        return {"type": "structural_tag", "format": _calls(tags, joiner, parallel)}
    trigger = f"<|channel|>commentary to={fmt.encoding.recipient_prefix}"
    return {"type": "structural_tag", "format": {
        "type": "triggered_tags", "triggers": [trigger], "tags": tags,
        "at_least_one": False, "stop_after_first": not parallel}}


# --------------------------------------------------------------------------- per request

@dataclass
class ToolChoicePlan:
    """How one chat request's tools are handled.

    `parser_cls` reads tool calls from the output (None: nothing is parsed);
    `structured_outputs` is the constraint the engine enforces (None: none); `finish_reason`
    is what a response that made calls reports: "stop" for a named function, as OpenAI does.
    """

    parser_cls: type | None = None
    structured_outputs: Any = None  # StructuredOutputsParams
    finish_reason: str = "tool_calls"
    named: str | None = None


_noted: set[tuple[str, str]] = set()


def _note_once(parser_cls, what: str, reason: str) -> None:
    key = (getattr(parser_cls, "__name__", str(parser_cls)), what)
    if key not in _noted:
        _noted.add(key)
        logger.warning("tool parser %s: %s (%s)", key[0], what, reason)


def _declares_format(parser_cls) -> bool:
    """Whether the parser describes its format (declaratively, or with its own grammar), so
    that a grammar in another format would be a substitution."""
    from callm.tool_parsers.abstract_tool_parser import FormatToolParser, ToolParser

    impl = getattr(parser_cls.tool_call_grammar, "__func__", None)
    if impl in (ToolParser.tool_call_grammar.__func__, FormatToolParser.tool_call_grammar.__func__):
        return bool(getattr(parser_cls, "formats", ()))
    return True


def plan_tool_choice(request, parser_cls: type | None, *, parse_auto: bool = True,
                     backend: str | None = None) -> ToolChoicePlan:
    """The plan for `request` (a ChatCompletionRequest after validation) with `parser_cls` as
    the model's tool parser (None: none configured). `parse_auto`: whether tool calls are
    parsed at all under tool_choice "auto" (the server's --enable-auto-tool-choice).

    Raises `ToolChoiceUnsupported` (a ValueError) when required/named cannot be written in the
    parser's own format."""
    from callm.engine.sampling_params import StructuredOutputsParams
    from callm.entrypoints.openai.protocol import ChatCompletionNamedToolChoiceParam

    choice = request.tool_choice
    tools = tool_specs(request.tools)
    if not tools or choice == "none":
        return ToolChoicePlan()
    parallel = request.parallel_tool_calls
    if choice == "required" or isinstance(choice, ChatCompletionNamedToolChoiceParam):
        named = choice.function.name if not isinstance(choice, str) else None
        if named is not None:
            tools, parallel = [t for t in tools if t.name == named], False
        grammar, reader = None, parser_cls
        if parser_cls is not None:
            try:
                grammar = parser_cls.tool_call_grammar(tools, mode="required", parallel=parallel)
            except UnsupportedToolFormat as e:
                if _declares_format(parser_cls):
                    what = f"function {named!r}" if named else "tool_choice 'required'"
                    raise ToolChoiceUnsupported(
                        f"{what} cannot be enforced in the format of the tool parser "
                        f"{parser_name(parser_cls)}: {e}") from None
                _note_once(parser_cls, "tool_choice required/named use the Hermes JSON "
                           "encoding (the parser declares no format)", str(e))
        if grammar is None:
            from callm.tool_parsers.hermes import HermesToolParser

            reader = HermesToolParser
            grammar = HermesToolParser.tool_call_grammar(tools, mode="required",
                                                         parallel=parallel)
        return ToolChoicePlan(reader, StructuredOutputsParams(structural_tag=grammar,
                                                              backend=backend),
                              "stop" if named else "tool_calls", named)
    if not parse_auto or parser_cls is None:
        return ToolChoicePlan()
    constraint = None
    if any(t.strict for t in tools):
        try:
            grammar = parser_cls.tool_call_grammar(tools, mode="auto", parallel=parallel)
            constraint = StructuredOutputsParams(structural_tag=grammar, backend=backend)
        except UnsupportedToolFormat as e:
            _note_once(parser_cls, "strict tools are not enforced in auto mode", str(e))
    return ToolChoicePlan(parser_cls, constraint)


def parser_name(parser_cls) -> str:
    """The registered name of a parser class (its class name if unregistered)."""
    from callm.tool_parsers.abstract_tool_parser import ToolParserManager

    names = sorted(n for n, c in ToolParserManager.tool_parsers.items() if c is parser_cls)
    return repr(names[0]) if names else parser_cls.__name__


def merge_constraints(own, tools):
    """A request's own constraint (response_format / structured_outputs) and the one its tool
    choice implies — either may be None. Only one may constrain anything; the request's own may
    still pick the backend. ValueError when both constrain."""
    if tools is None:
        return own
    if own is None:
        return tools
    if own.kind is not None:
        raise ValueError("response_format / structured_outputs cannot be combined with "
                         "tool_choice 'required', a named function, or strict tools")
    if own.backend:
        from dataclasses import replace

        return replace(tools, backend=own.backend)
    return tools
