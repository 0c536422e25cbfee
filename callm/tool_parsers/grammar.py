"""Tool calls as grammars, derived from the same `ToolCallFormat` the parser reads.

`format_structural_tag(fmt, tools, mode, parallel)` turns a format's declarative description,
the request's tools and the tool choice into one *structural tag* — xgrammar's structural-tag
JSON, used here as the backend-neutral description of a constrained output (each backend in
`callm.engine.structured_output` compiles it: xgrammar natively, llguidance as Lark, outlines as
a regex where the shape allows). The output it allows is written in the model's native markup,
so the parser that reads unconstrained output reads it too:

- `required` (and a named function): the output is nothing but calls — the format's region
  and call markers, each call's name one of the tools, its arguments valid against that tool's
  JSON Schema (whitespace fixed: `{"a": 1, "b": [2, 3]}`); one call when not `parallel`.
- `auto` (strict tools): free text, until the model writes the format's start marker; from
  there the rest of the call (or region of calls) is held to the same grammar, then free text
  resumes. Strict tools get their schema; non-strict tools any JSON object. This is xgrammar's
  `triggered_tags` (a `dispatch` where the region has no end marker), llguidance's lazy lexemes.

`plan_tool_choice` decides, per request, which parser reads the output and which constraint (if
any) the engine enforces. A parser with no declarative format (a plugin that subclasses
`ToolParser` directly) or one whose encoding has no JSON grammar (pythonic) cannot be written
by a grammar: `required`/named then fall back to the Hermes encoding
(`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`), parsed by the Hermes parser,
with a logged note; strict tools in `auto` mode are then left unconstrained.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from callm.tool_parsers.formats import JsonObject, NameThenJson, ToolCallFormat

logger = logging.getLogger(__name__)

Mode = Literal["required", "auto"]
# The arguments of a tool declared without `parameters`: an empty object (OpenAI semantics).
NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}
ANY_OBJECT = {"type": "object"}


class UnsupportedToolFormat(ValueError):
    """The format cannot be written by a grammar (in this mode)."""


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


# --------------------------------------------------------------------------- structural tags

def _const(text: str) -> dict:
    return {"type": "const_string", "value": text}


def _seq(*elements: dict) -> dict:
    parts = [e for e in elements if not (e["type"] == "const_string" and not e["value"])]
    return parts[0] if len(parts) == 1 else {"type": "sequence", "elements": parts}


def _one_of(elements: list[dict]) -> dict:
    return elements[0] if len(elements) == 1 else {"type": "or", "elements": elements}


def _call_tag(fmt: ToolCallFormat, tool: ToolSpec, schema: dict) -> dict:
    """One call of `tool`, markers included: begin (up to the arguments), arguments, end."""
    enc, pad = fmt.encoding, fmt.call_padding
    content = {"type": "json_schema", "json_schema": schema}
    if isinstance(enc, JsonObject):
        name = json.dumps(tool.name, ensure_ascii=False)
        begin = f'{fmt.call_start}{pad}{{"{enc.name_keys[0]}": {name}, "{enc.args_keys[0]}": '
        return {"type": "tag", "begin": begin, "content": content,
                "end": f"}}{pad}{fmt.call_end}"}
    if isinstance(enc, NameThenJson):
        return {"type": "tag", "begin": f"{fmt.call_start}{pad}{tool.name}{enc.args_marker}",
                "content": content, "end": f"{pad}{fmt.call_end}"}
    raise UnsupportedToolFormat(f"{type(enc).__name__} calls have no JSON grammar")


def _calls(fmt: ToolCallFormat, tags: list[dict], parallel: bool) -> dict:
    """At least one call; exactly one unless `parallel`."""
    if not parallel:
        return _one_of(tags)
    return {"type": "tags_with_separator", "tags": tags, "separator": fmt.call_joiner,
            "at_least_one": True, "stop_after_first": False}


def format_structural_tag(fmt: ToolCallFormat, tools: Sequence[ToolSpec], *, mode: Mode,
                          parallel: bool = True) -> dict:
    """The structural tag of `fmt`'s calls to `tools` (see the module docstring)."""
    if not tools:
        raise ValueError("a tool-call grammar needs at least one tool")
    if mode == "required":
        tags = [_call_tag(fmt, t, t.parameters) for t in tools]
    else:
        tags = [_call_tag(fmt, t, t.parameters if t.strict else ANY_OBJECT) for t in tools]
    calls = _calls(fmt, tags, parallel)
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
    if mode != "auto":
        raise ValueError(f"unknown tool-call grammar mode {mode!r}")
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


def plan_tool_choice(request, parser_cls: type | None, *, parse_auto: bool = True,
                     backend: str | None = None) -> ToolChoicePlan:
    """The plan for `request` (a ChatCompletionRequest after validation) with `parser_cls` as
    the model's tool parser (None: none configured). `parse_auto`: whether tool calls are
    parsed at all under tool_choice "auto" (the server's --enable-auto-tool-choice)."""
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
                _note_once(parser_cls, "tool_choice required/named use the Hermes JSON "
                           "encoding instead of the model's format", str(e))
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
