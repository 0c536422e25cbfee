"""An incremental reader that splits model output into content and tool calls.

`MarkupStream` is a recursive-descent parser over text that grows: it is written as generators
that `yield` whenever they need more characters, so the parse of a half-written call simply
pauses and resumes when the next delta arrives. Each character is looked at a bounded number of
times, so cost is linear in output length whatever the delta sizes, and because the parser only
decides once the text makes a decision certain, every chunking yields the same result.

A call is *committed* once its name has been read (and checked) and its arguments begin
validly — for JSON arguments, their opening `{` (or the whole value, when they are a JSON
string holding an object); before that, text that does not fit the format is released as
content, so invalid JSON never becomes a call. After commit the call stays a call, and what
clients get stays usable:

- JSON arguments pass through an incremental validator (`json_prefix.JsonPrefix`): only text
  that is a valid JSON prefix is emitted, and only up to a point that quotes and brackets
  alone close — a key and its colon, a comma, a number like `1.` or a literal like `tru` wait
  until what follows shows them valid.
- If the arguments turn invalid (`{"a": 1, b: 2}`, `{"a": tru}`, `{"a": "x"]`), the call keeps
  the longest valid part, closed to valid JSON (`{"a": 1}`; the closing text is streamed too),
  and the rest of the call's markup is discarded: up to where its brackets balance, or up to
  the next marker of the format. The whole response does exactly the same, so a stream still
  equals it.
- If the output ends inside the arguments (truncation), they stay the valid prefix emitted so
  far, which quotes and brackets complete (`json_prefix.json_closer`): the server closes them
  unless the output was cut by `max_tokens` (finish_reason "length"), as OpenAI leaves them.
- Markup is never content: a doubled start marker is one, a stray end marker after a call is
  dropped, and a list entry that is not a call is skipped (a list with no call is content).
  A Python or markup-parameter call that breaks after it committed keeps what was read and
  drops the rest up to its own end (`)`, the closing tag); when the output ends first, that
  rest is content.
"""

import ast
import json
import logging
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import regex

from callm.tool_parsers.formats import (DslCall, HarmonyMessage, JsonObject, NameThenJson,
                                        NestedXml, PythonicCall, ToolCallFormat, XmlParameters)
from callm.tool_parsers.json_prefix import DONE, ERROR, JsonPrefix, strict_loads

logger = logging.getLogger(__name__)

_WS = regex.compile(r"\s*")
_JSON_STRUCTURE = regex.compile(r'["{}\[\]]')
_JSON_STRING_SPECIAL = regex.compile(r'["\\]')
_JSON_SCALAR_END = regex.compile(r"[\s,\]}]")
_PY_STRUCTURE = regex.compile(r"""['"()\[\]{},]""")
_PY_NAME = regex.compile(r"[A-Za-z_][\w.]*")
_PY_KEYWORD = regex.compile(r"[A-Za-z_]\w*")
_CALL_ID = regex.compile(r"[A-Za-z0-9_\-]+")
_XML_NAME = regex.compile(r"[^\s<>]+")
_DSL_KEY = regex.compile(r"[^\s:{}\[\],<>]+")
_DSL_SCALAR = regex.compile(r"[^,}\]<]+")
_NOT_STRING_ATTRIBUTE = regex.compile(r'string="false"|type="(?!string")[^"]*"')
_ANY_JSON = {"type": ["null", "boolean", "number", "object", "array"]}
_KEY_VALUE_LAYOUT = regex.compile(r"(?:\s|\\n)+")
_NESTED_KEY = regex.compile(r"[^<>/\s]+")
_HARMONY_HEADER = regex.compile(
    r"(?:<\|start\|>)?((?:assistant|<\|channel\|>|\s*to=)"
    r"(?:(?!<\|(?:message|end|start|call|return)\|>)[^\n]){0,300})<\|message\|>")
_HARMONY_RECIPIENT = regex.compile(r"\bto=(\S+?)(?=\s|<\||$)")
_CLOSING_JUNK = r"[\s\]}]*"


class _NoMatch(Exception):
    """The text does not fit what the parser expected here."""


class _EndOfText(Exception):
    """The output ended while more text was needed."""


@dataclass
class Content:
    text: str


@dataclass
class CallStart:
    index: int
    id: str
    name: str


@dataclass
class Arguments:
    index: int
    text: str


Event = Content | CallStart | Arguments
Parse = Generator[None, None, object]


class MarkupStream:
    """Parses one model output, fed as the text so far; yields events for what became certain."""

    def __init__(self, formats: Sequence[ToolCallFormat], tools: Mapping[str, dict] | Sequence[str],
                 new_call_id: Callable[[], str]):
        """`tools`: the request's tools, name -> JSON Schema of the parameters (or just names);
        markup formats type their text values by it."""
        self.tools = tools if isinstance(tools, Mapping) else {name: {} for name in tools}
        self.tool_names = frozenset(self.tools)
        # Bare variants that need a known tool name can never match without tools: skip them so
        # ordinary text is not held back waiting for them.
        self.formats = [f for f in formats if not f.known_names_only or self.tool_names]
        self._openers = [regex.compile(f.opener_pattern()) for f in self.formats]
        self._any_opener = regex.compile("|".join(f"(?:{p.pattern})" for p in self._openers))
        self._new_call_id = new_call_id
        self.text = ""
        self.pos = 0
        self.eof = False
        self.num_calls = 0
        self._calls_with_args: set[int] = set()
        self._events: list[Event] = []
        self._pending_space = ""
        self._broken = False
        self._parse = self._document()

    # ----- driving -----

    def feed(self, text_so_far: str) -> list[Event]:
        """Advance with the whole output so far (it must extend what was fed before)."""
        self.text = text_so_far
        return self._advance()

    def finish(self) -> list[Event]:
        """The output is complete: decide everything still pending."""
        self.eof = True
        events = self._advance()
        for index in range(self.num_calls):
            if index not in self._calls_with_args:  # name seen but no arguments: none given
                self._calls_with_args.add(index)
                events.append(Arguments(index, "{}"))
        return events

    def _advance(self) -> list[Event]:
        if self._broken:
            self._emit_content(self.text[self.pos:])
            self.pos = len(self.text)
        else:
            try:
                next(self._parse)
            except StopIteration:
                pass
            except Exception:  # a parser bug must not take the request down: degrade to text
                logger.exception("tool-call parsing failed; passing the rest through as content")
                self._broken = True
                return self._advance()
        if self.eof:
            self._pending_space = ""
        events, self._events = self._events, []
        return events

    # ----- output -----

    def _emit_content(self, text: str) -> None:
        """Whitespace waits for the next real content, so runs of it between or after calls
        never become content of their own."""
        text = self._pending_space + text
        kept = text.rstrip()
        self._pending_space = text[len(kept):]
        if kept:
            self._events.append(Content(kept))

    def _begin_call(self, name: str, call_id: str | None = None) -> None:
        self._events.append(CallStart(self.num_calls, call_id or self._new_call_id(), name))
        self.num_calls += 1

    def _emit_arguments(self, text: str) -> None:
        if text:
            self._calls_with_args.add(self.num_calls - 1)
            self._events.append(Arguments(self.num_calls - 1, text))

    # ----- document level -----

    def _document(self) -> Parse:
        while True:
            opener = yield from self._content_until_opener()
            if opener is None:
                return
            start = self.pos
            if (yield from self._drop_marker(start)):
                continue
            for fmt, pattern in zip(self.formats, self._openers):
                while True:  # an earlier format's marker may still be arriving
                    m = pattern.match(self.text, start, partial=True)
                    if m is None or not m.partial or self.eof:
                        break
                    yield
                if m is None or m.partial:
                    continue
                self.pos = m.end()
                if (yield from self._attempt(fmt, opened_by_call=m.group() == fmt.call_start)):
                    break
                self.pos = start
            else:  # no format fits here: the opener was ordinary text
                self._emit_content(self.text[start])
                self.pos = start + 1

    def _drop_marker(self, start: int) -> Parse:
        """Skip a marker that is never content (the format's `drop_markers`), waiting while
        the text so far could still be the start of one."""
        while True:
            avail = self.text[start:]
            arriving = False
            for fmt in self.formats:
                for marker in fmt.drop_markers:
                    if avail.startswith(marker):
                        self.pos = start + len(marker)
                        return True
                    arriving = arriving or (not self.eof and marker.startswith(avail))
                for pattern in fmt.drop_patterns:
                    m = _compiled(pattern).match(self.text, start, partial=not self.eof)
                    if m is not None and not m.partial and m.end() > start:
                        self.pos = m.end()
                        return True
                    arriving = arriving or (m is not None and m.partial)
            if not arriving:
                return False
            yield

    def _content_until_opener(self) -> Parse:
        """Release content up to the next place markup may begin; hold back a possible marker
        prefix at the end until it either completes or cannot."""
        while True:
            text = self.text
            m = self._any_opener.search(text, self.pos)
            if m is not None:
                self._emit_content(text[self.pos:m.start()])
                self.pos = m.start()
                return m
            hold = len(text)
            if not self.eof:
                partial = self._any_opener.search(text, self.pos, partial=True)
                if partial is not None:
                    hold = partial.start()
            self._emit_content(text[self.pos:hold])
            self.pos = hold
            if self.eof:
                return None
            yield

    def _attempt(self, fmt: ToolCallFormat, opened_by_call: bool) -> Parse:
        """Parse one region of calls; False (nothing emitted) if the text does not fit."""
        calls_before = self.num_calls
        try:
            yield from self._region(fmt, opened_by_call, calls_before)
        except _EndOfText:
            if self.num_calls == calls_before:
                return False
            self.pos = len(self.text)
        except _NoMatch:
            return False
        return True

    def _region(self, fmt: ToolCallFormat, opened_by_call: bool, calls_before: int) -> Parse:
        if fmt.region_start and not opened_by_call:  # a doubled start marker is one
            yield from self._optional(_repeated(fmt.region_start))
        if fmt.list_wrapped:
            yield from self._skip_ws()
            yield from self._expect("[")
            if fmt.marker:  # `[]` after the marker: markup that says "no calls"
                mark = self.pos
                yield from self._skip_ws()
                if (yield from self._literal("]")):
                    if fmt.region_end:
                        yield from self._optional(_closing(fmt.region_end, junk=r"\s*"))
                    return
                self.pos = mark
        count = 0
        while True:
            mark = self.pos
            try:
                if count:
                    yield from self._skip_ws()
                    if fmt.region_end and (yield from self._literal(fmt.region_end)):
                        self.pos -= len(fmt.region_end)  # read below with stray repeats
                        break
                    if fmt.list_wrapped:
                        if (yield from self._literal("]")):
                            break
                        yield from self._expect(",")
                    elif fmt.separator:
                        yield from self._expect(fmt.separator)
                yield from self._skip_ws()
                if fmt.call_start and (count or not opened_by_call):
                    yield from self._expect(fmt.call_start)
                    yield from self._skip_ws()
                if fmt.call_start:  # a doubled start marker is one
                    yield from self._optional(_repeated(fmt.call_start))
                    yield from self._skip_ws()
                entry = self.pos
                try:
                    is_call = yield from self._call(fmt)
                except _NoMatch:
                    if not fmt.list_wrapped:
                        raise
                    # A list entry that is not a call is markup, not content: skip it (a list
                    # with no call at all is content).
                    self.pos = entry
                    yield from self._skip_value(fmt)
                    count += 1
                    continue
                if not is_call:  # markup that opens content (a Harmony message header)
                    return
            except _NoMatch:
                if self.num_calls == calls_before:
                    raise
                self.pos = mark  # what follows the last good call is not markup
                break
            count += 1
            if fmt.call_end:
                yield from self._optional(_closing(fmt.call_end))
            if not (fmt.list_wrapped or fmt.separator or fmt.region_end or fmt.region_start):
                return  # one call per opening marker
        if self.num_calls == calls_before:
            raise _NoMatch  # a list of no calls
        if fmt.region_end:
            yield from self._optional(_closing(fmt.region_end, junk=r"\s*"))

    def _skip_value(self, fmt: ToolCallFormat) -> Parse:
        if isinstance(fmt.encoding, PythonicCall):
            yield from self._python_value()
        else:
            yield from self._json_value()

    # ----- one call -----

    def _call(self, fmt: ToolCallFormat) -> Parse:
        """Parse one call; False when the markup read was not a call but opens content."""
        enc = fmt.encoding
        if isinstance(enc, JsonObject):
            yield from self._json_object_call(fmt, enc)
        elif isinstance(enc, NameThenJson):
            yield from self._name_then_json_call(fmt, enc)
        elif isinstance(enc, PythonicCall):
            yield from self._pythonic_call(fmt)
        elif isinstance(enc, XmlParameters):
            yield from self._xml_call(fmt, enc)
        elif isinstance(enc, NestedXml):
            yield from self._nested_xml_call(fmt, enc)
        elif isinstance(enc, DslCall):
            yield from self._dsl_call(fmt, enc)
        elif isinstance(enc, HarmonyMessage):
            return (yield from self._harmony_message(fmt, enc))
        else:
            raise TypeError(f"unknown tool-call encoding {enc!r}")
        return True

    def _check_name(self, fmt: ToolCallFormat, name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise _NoMatch
        if fmt.known_names_only and name not in self.tool_names:
            raise _NoMatch
        return name

    def _json_object_call(self, fmt: ToolCallFormat, enc: JsonObject) -> Parse:
        """`{"name": "f", "arguments": {...}}`. The call commits once its arguments begin
        validly (or the object closes without any); JSON that goes wrong before that is no
        call, after it the arguments are closed where it went wrong (`_json_arguments`)."""
        start = self.pos
        yield from self._expect("{")
        yield from self._skip_ws()
        key = yield from self._json_string()
        if enc.name_is_key:  # {"name": {arguments}}
            yield from self._skip_ws()
            yield from self._expect(":")
            yield from self._skip_ws()
            name = self._check_name(fmt, key)
            if (yield from self._arguments_value(fmt, lambda: self._begin_call(name), 1)):
                try:
                    yield from self._skip_ws()
                    yield from self._expect("}")
                except _NoMatch:
                    yield from self._discard_call(fmt, 1)
            return
        call_id = None
        if enc.id_key and key == enc.id_key:  # the model's call id, then the name (Cohere)
            yield from self._skip_ws()
            yield from self._expect(":")
            yield from self._skip_ws()
            if (yield from self._peek()) == '"':
                call_id = yield from self._json_string()
                yield from self._skip_ws()
                if (yield from self._literal(",")):
                    yield from self._skip_ws()
                    key = yield from self._json_string()
        while key not in enc.name_keys:
            if fmt.marker and not fmt.known_names_only:
                # Name not first: read the whole object, then decide.
                self.pos = start
                yield from self._whole_json_object_call(fmt, enc)
                return
            # Unmarked or known-name-only: only scalar members may come before the name
            # (`"type": "function"`), so ordinary JSON is given up on at its first nested value.
            if key in enc.args_keys:
                raise _NoMatch
            yield from self._skip_ws()
            yield from self._expect(":")
            yield from self._skip_ws()
            if (yield from self._peek()) in "{[":
                raise _NoMatch
            _check_json((yield from self._json_value()))
            yield from self._skip_ws()
            yield from self._expect(",")
            yield from self._skip_ws()
            key = yield from self._json_string()
        yield from self._skip_ws()
        yield from self._expect(":")
        yield from self._skip_ws()
        name = self._check_name(fmt, (yield from self._json_string()))

        def begin() -> None:
            self._begin_call(name, call_id)

        committed = False
        try:
            while True:
                yield from self._skip_ws()
                if (yield from self._literal("}")):
                    break
                yield from self._expect(",")
                yield from self._skip_ws()
                key = yield from self._json_string()
                yield from self._skip_ws()
                yield from self._expect(":")
                yield from self._skip_ws()
                if key in enc.args_keys and not committed:
                    valid = yield from self._arguments_value(fmt, begin, 1)
                    committed = True
                    if not valid:
                        return  # the rest of the object was discarded
                else:
                    raw = yield from self._json_value()
                    if not committed:
                        _check_json(raw)
        except _NoMatch:
            if not committed:
                raise
            yield from self._discard_call(fmt, 1)  # not JSON after valid arguments
            return
        if not committed:  # no arguments given
            begin()
            self._emit_arguments("{}")

    def _whole_json_object_call(self, fmt: ToolCallFormat, enc: JsonObject) -> Parse:
        raw = yield from self._json_value()
        try:
            obj = strict_loads(raw)
        except ValueError:
            raise _NoMatch from None
        if not isinstance(obj, dict):
            raise _NoMatch
        name = self._check_name(fmt, next((obj[k] for k in enc.name_keys if k in obj), None))
        arguments = _arguments_json(next((obj[k] for k in enc.args_keys if k in obj), None))
        if arguments is None:
            raise _NoMatch
        call_id = obj.get(enc.id_key) if enc.id_key else None
        self._begin_call(name, str(call_id) if isinstance(call_id, (str, int)) else None)
        self._emit_arguments(arguments)

    def _name_then_json_call(self, fmt: ToolCallFormat, enc: NameThenJson) -> Parse:
        m = yield from self._match(_compiled(enc.name_pattern))
        name = m.group("name") if "name" in m.re.groupindex else m.group()
        call_id = m.group() if enc.id_in_name else None
        if enc.id_marker and (yield from self._literal(enc.id_marker)):
            call_id = (yield from self._match(_CALL_ID)).group()
        if enc.args_marker.strip():
            yield from self._skip_ws()
            yield from self._literal(enc.args_marker.strip())
        yield from self._skip_ws()
        if (yield from self._peek()) != "{":
            raise _NoMatch
        name = self._check_name(fmt, name)
        yield from self._arguments_value(fmt, lambda: self._begin_call(name, call_id), 0)
        if enc.args_suffix.strip():
            yield from self._optional(_compiled(r"\s*" + regex.escape(enc.args_suffix.strip())))

    def _pythonic_call(self, fmt: ToolCallFormat) -> Parse:
        name = (yield from self._match(_PY_NAME)).group()
        yield from self._expect("(")
        self._begin_call(self._check_name(fmt, name))
        self._emit_arguments("{")
        first = True
        try:
            while True:
                yield from self._skip_ws()
                if (yield from self._literal(")")):
                    break
                if not first:
                    yield from self._expect(",")
                    yield from self._skip_ws()
                    if (yield from self._literal(")")):
                        break
                key = (yield from self._match(_PY_KEYWORD)).group()
                yield from self._skip_ws()
                yield from self._expect("=")
                yield from self._skip_ws()
                value = python_literal_json((yield from self._python_value()))
                self._emit_arguments(("" if first else ", ") + json.dumps(key) + ": " + value)
                first = False
        except _NoMatch:  # committed: close what was read, drop the rest of the call
            self._emit_arguments("}")
            yield from self._skip_bounded(self._skip_python_arguments())
            return
        self._emit_arguments("}")

    def _skip_python_arguments(self) -> Parse:
        """The rest of a broken Python call, up to and including its `)`."""
        while True:
            yield from self._python_value()
            ch = yield from self._peek()
            if ch == ",":
                self.pos += 1
                continue
            if ch == ")":
                self.pos += 1
            return

    def _xml_call(self, fmt: ToolCallFormat, enc: XmlParameters) -> Parse:
        """Name and parameters in markup; values typed by the tool's schema (`typed_value`).
        String values stream as they arrive, others are converted once complete."""
        if enc.name_prefix:
            yield from self._expect(enc.name_prefix)
        name = (yield from self._match(_xml_key_pattern(enc.name_suffix))).group().strip()
        if enc.name_suffix:
            yield from self._expect(enc.name_suffix)
        yield from self._xml_attributes(enc)
        self._begin_call(self._check_name(fmt, name))
        properties = _properties(self.tools.get(name))
        value_end = _xml_value_end(enc)
        key_pattern = _xml_key_pattern(enc.key_suffix)
        self._emit_arguments("{")
        separator = ""
        wrapper_open, wrapper_close = enc.optional_wrapper
        try:
            while True:
                yield from self._skip_ws()
                if wrapper_open and ((yield from self._literal(wrapper_open))
                                     or (yield from self._literal(wrapper_close))):
                    continue
                if enc.call_suffix and (yield from self._literal(enc.call_suffix)):
                    break
                if not (yield from self._literal(enc.key_prefix)):
                    raise _NoMatch  # junk, or the call ends without its own closing tag
                key = (yield from self._match(key_pattern)).group().strip()
                yield from self._expect(enc.key_suffix)
                attributes = yield from self._xml_attributes(enc)
                if enc.value_prefix:  # layout before it, even a written-out "\n" (GLM-4.7)
                    yield from self._optional(_KEY_VALUE_LAYOUT)
                    yield from self._expect(enc.value_prefix)
                schema = properties.get(key)
                if _NOT_STRING_ATTRIBUTE.search(attributes):
                    schema = _ANY_JSON
                head = separator + json.dumps(key, ensure_ascii=False) + ": "
                separator = ", "
                if _is_string(schema):
                    self._emit_arguments(head + '"')
                    yield from self._xml_value(enc, value_end, self._emit_json_chars)
                    self._emit_arguments('"')
                else:
                    text = yield from self._xml_value(enc, value_end, None)
                    self._emit_arguments(head + json.dumps(typed_value(text, schema),
                                                           ensure_ascii=False))
                yield from self._literal(enc.value_suffix)
        except _NoMatch:  # committed: close what was read, drop the rest of the call
            self._emit_arguments("}")
            if enc.call_suffix:
                yield from self._skip_bounded(self._skip_to(fmt, enc.call_suffix))
            return
        self._emit_arguments("}")

    def _xml_attributes(self, enc: XmlParameters) -> Parse:
        """Attributes after a quoted name or key, up to `attributes_end` (none: "")."""
        if not enc.attributes_end:
            return ""
        m = yield from self._match(_compiled(r"[^<>\n]{0,200}?" + regex.escape(enc.attributes_end)))
        return m.group()

    def _emit_json_chars(self, text: str) -> None:
        if text:
            self._emit_arguments(json.dumps(text, ensure_ascii=False)[1:-1])

    def _xml_value(self, enc: XmlParameters, end: regex.Pattern,
                   sink: Callable[[str], None] | None) -> Parse:
        """The text of one value, up to its closing tag (or the next parameter, or the call's
        end); one newline at either side is layout. `sink` gets the text as it becomes
        certain: a trailing newline or partial tag waits."""
        if (yield from self._peek()) == "\n":
            self.pos += 1
        start = emitted = i = self.pos
        while True:
            text = self.text
            m = end.search(text, i)
            if m is not None:
                stop = m.start() - (m.start() > start and text[m.start() - 1] == "\n")
                if sink:
                    sink(text[emitted:stop])
                self.pos = m.start()
                return text[start:stop]
            if self.eof:
                if sink:
                    sink(text[emitted:])
                self.pos = len(text)
                raise _EndOfText
            partial = end.search(text, i, partial=True)
            hold = partial.start() if partial is not None else len(text)
            safe = hold - (hold > start and text[hold - 1] == "\n")
            if sink and safe > emitted:
                sink(text[emitted:safe])
                emitted = safe
            i = hold
            yield

    def _nested_xml_call(self, fmt: ToolCallFormat, enc: NestedXml) -> Parse:
        """Tags named by keys, read into a tree and typed by the schema once the call ends."""
        yield from self._expect(enc.namespace + enc.name_prefix)
        name = (yield from self._match(_xml_key_pattern(enc.name_suffix))).group().strip()
        yield from self._expect(enc.name_suffix)
        self._begin_call(self._check_name(fmt, name))
        try:
            members = yield from self._nested_members(enc, enc.namespace + enc.call_suffix)
        except _NoMatch:
            members = []  # committed: what could not be read is dropped with the call's tags
        self._emit_arguments(json.dumps(nested_value(members, self.tools.get(name), enc),
                                        ensure_ascii=False))

    def _nested_members(self, enc: NestedXml, closer: str) -> Parse:
        """(key, text or members) pairs up to and including `closer`."""
        members = []
        while True:
            yield from self._skip_ws()
            if (yield from self._literal(closer)):
                return members
            yield from self._expect(enc.namespace + "<")
            key = (yield from self._match(_NESTED_KEY)).group()
            yield from self._expect(">")
            end = f"{enc.namespace}</{key}>"
            mark = self.pos
            yield from self._skip_ws()
            if (yield from self._literal(enc.namespace + "<")) and (yield from self._peek()) != "/":
                self.pos = mark
                members.append((key, (yield from self._nested_members(enc, end))))
                continue
            self.pos = mark
            while (i := self.text.find(end, self.pos)) == -1:
                if self.eof:
                    raise _EndOfText
                yield
            members.append((key, self.text[mark:i]))
            self.pos = i + len(end)

    def _dsl_call(self, fmt: ToolCallFormat, enc: DslCall) -> Parse:
        """`call:name{key:value,...}`, each top-level argument emitted once complete."""
        if enc.prefix:
            yield from self._expect(enc.prefix)
        name = (yield from self._match(_PY_NAME)).group()
        yield from self._skip_ws()
        yield from self._expect("{")
        self._begin_call(self._check_name(fmt, name))
        self._emit_arguments("{")
        try:
            yield from self._dsl_members(enc, "}", self._emit_arguments)
        except _NoMatch:
            pass  # committed: close what was read
        self._emit_arguments("}")

    def _dsl_members(self, enc: DslCall, closer: str, sink: Callable[[str], None]) -> Parse:
        """Members of a DSL object (`closer` "}") or items of a list ("]"), as JSON text into
        `sink`, up to and including the closer."""
        first = True
        while True:
            yield from self._skip_ws()
            if (yield from self._literal(closer)):
                return
            if not first:
                yield from self._expect(",")
                yield from self._skip_ws()
                if (yield from self._literal(closer)):
                    return
            item = ""
            if closer == "}":
                if (yield from self._literal(enc.quote)):
                    key = yield from self._dsl_quoted(enc)
                else:
                    key = (yield from self._match(_DSL_KEY)).group()
                yield from self._skip_ws()
                yield from self._expect(":")
                yield from self._skip_ws()
                item = json.dumps(key, ensure_ascii=False) + ": "
            value = yield from self._dsl_value(enc)
            sink(("" if first else ", ") + item + value)
            first = False

    def _dsl_value(self, enc: DslCall) -> Parse:
        if (yield from self._literal(enc.quote)):
            return json.dumps((yield from self._dsl_quoted(enc)), ensure_ascii=False)
        for opener, closer in (("{", "}"), ("[", "]")):
            if (yield from self._literal(opener)):
                parts: list[str] = []
                yield from self._dsl_members(enc, closer, parts.append)
                return opener + "".join(parts) + closer
        if (yield from self._peek()) in ",}]":  # `key:` with no value: an empty string
            return '""'
        text = (yield from self._match(_DSL_SCALAR)).group().strip()
        if not text:
            raise _NoMatch
        return json.dumps(typed_value(text, {"type": ["null", "boolean", "number"]}),
                          ensure_ascii=False)

    def _dsl_quoted(self, enc: DslCall) -> Parse:
        """The text up to the closing quote mark."""
        while True:
            end = self.text.find(enc.quote, self.pos)
            if end != -1:
                value = self.text[self.pos:end]
                self.pos = end + len(enc.quote)
                return value
            if self.eof:
                raise _EndOfText
            yield

    def _harmony_message(self, fmt: ToolCallFormat, enc: HarmonyMessage) -> Parse:
        """A message header; a call when addressed to a function, else its body is content."""
        header = (yield from self._match(_HARMONY_HEADER)).group(1)
        recipient = _HARMONY_RECIPIENT.search(header)
        if recipient is None or not recipient.group(1).startswith(enc.recipient_prefix):
            return False
        name = self._check_name(fmt, recipient.group(1)[len(enc.recipient_prefix):])
        yield from self._skip_ws()
        if (yield from self._peek()) != "{":
            return False  # no JSON arguments: the body is content
        yield from self._arguments_value(fmt, lambda: self._begin_call(name), 0)
        return True

    # ----- JSON arguments -----

    def _arguments_value(self, fmt: ToolCallFormat, begin: Callable[[], None],
                         enclosing: int) -> Parse:
        """A call's JSON arguments. An object streams as it arrives (`_json_arguments`); a JSON
        string holding an object, or null, is read whole. `begin()` commits the call once the
        arguments begin validly — before that, _NoMatch. False when they turned invalid and
        the rest of the call (`enclosing` brackets still open around them) was discarded."""
        if (yield from self._peek()) == "{":
            begin()
            return (yield from self._json_arguments(fmt, enclosing))
        raw = yield from self._json_value()
        try:
            arguments = _arguments_json(strict_loads(raw))
        except ValueError:
            arguments = None
        if arguments is None:
            raise _NoMatch
        begin()
        self._emit_arguments(arguments)
        return True

    def _json_arguments(self, fmt: ToolCallFormat, enclosing: int) -> Parse:
        """Stream a JSON object through the validator (`json_prefix`): only text that is a
        valid JSON prefix goes out, up to the last point that quotes and brackets alone close
        (a key, a comma, a number like `1.` or a literal like `tru` wait for what follows).
        True once the object ends. Where the JSON turns invalid the arguments are closed
        (the closing text is emitted too), the rest of the call is discarded and the answer
        is False. At the end of the output (truncation) the arguments stay as emitted."""
        start = emitted = self.pos
        checker = JsonPrefix()
        while True:
            text = self.text
            stop = checker.scan(text, start + checker.length, len(text))
            if self.eof:
                checker.finish()  # a number at the very end is complete
            safe = start + checker.safe
            if safe > emitted:
                self._emit_arguments(text[emitted:safe])
                emitted = safe
            if checker.status == DONE:
                self.pos = stop
                return True
            if checker.status == ERROR:
                self._emit_arguments(checker.closer())
                self.pos = stop
                yield from self._discard_call(fmt, len(checker.stack) + enclosing,
                                              checker.error_in_string)
                return False
            if self.eof:
                self.pos = len(text)
                raise _EndOfText
            yield

    def _discard_call(self, fmt: ToolCallFormat, depth: int, in_string: bool = False) -> Parse:
        """Skip the rest of a call whose JSON went wrong: up to where its brackets balance
        (`depth` of them open; strings tracked loosely), or up to the next of the format's
        markers, or to the end of the output."""
        pattern, markers = _discard_patterns(fmt)
        i = self.pos
        while True:
            text = self.text
            while True:
                m = pattern.search(text, i, partial=True)
                if m is None or m.partial:
                    i = len(text) if m is None else m.start()
                    break
                token = m.group()
                if len(token) > 1 and not token.startswith("\\"):  # a marker
                    self.pos = m.start()
                    return
                if markers is not None and not self.eof:  # a marker may be arriving here
                    arriving = markers.match(text, m.start(), partial=True)
                    if arriving is not None and arriving.partial:
                        i = m.start()
                        break
                i = m.end()
                if token.startswith("\\"):
                    continue
                if token == '"':
                    in_string = not in_string
                elif not in_string:
                    depth += 1 if token in "{[" else -1
                    if depth == 0:
                        self.pos = i
                        return
            if self.eof:
                self.pos = len(text)
                raise _EndOfText
            self.pos = i
            yield

    def _skip_bounded(self, skip: Parse) -> Parse:
        """Run `skip`, which drops the rest of a broken call; when the output ends before it
        finds the call's end, nothing is dropped (the text is content after all)."""
        mark = self.pos
        try:
            yield from skip
        except (_EndOfText, _NoMatch):
            self.pos = mark

    def _skip_to(self, fmt: ToolCallFormat, end: str) -> Parse:
        """Up to and including `end`, or up to the next of the format's markers."""
        pattern = _skip_to_pattern(fmt, end)
        i = self.pos
        while True:
            m = pattern.search(self.text, i, partial=True)
            if m is not None and not m.partial:
                self.pos = m.end() if m.group() == end else m.start()
                return
            if self.eof:
                raise _EndOfText
            i = len(self.text) if m is None else m.start()
            yield

    # ----- primitives: each waits for text, consumes on success, raises _NoMatch otherwise -----

    def _peek(self) -> Parse:
        while self.pos >= len(self.text):
            if self.eof:
                raise _EndOfText
            yield
        return self.text[self.pos]

    def _skip_ws(self) -> Parse:
        """Skip whitespace, waiting until the next non-space character (or the end) is known."""
        while True:
            self.pos = _WS.match(self.text, self.pos).end()
            if self.pos < len(self.text) or self.eof:
                return
            yield

    def _literal(self, lit: str) -> Parse:
        """Consume `lit` if it comes next; False as soon as it cannot."""
        while True:
            avail = self.text[self.pos:self.pos + len(lit)]
            if avail == lit:
                self.pos += len(lit)
                return True
            if not lit.startswith(avail) or self.eof:
                return False
            yield

    def _expect(self, lit: str) -> Parse:
        if not (yield from self._literal(lit)):
            if self.eof and lit.startswith(self.text[self.pos:]):
                raise _EndOfText
            raise _NoMatch

    def _match(self, pattern: regex.Pattern) -> Parse:
        """Consume the longest non-empty match of `pattern`, once no more text could extend it."""
        while True:
            m = pattern.match(self.text, self.pos, partial=True)
            if m is None or (m.end() == self.pos and not m.partial):
                if self.pos >= len(self.text) and self.eof:
                    raise _EndOfText
                raise _NoMatch
            if not m.partial and (m.end() < len(self.text) or self.eof):
                # A complete match may still grow into the text after it (the regex module
                # reports the complete one): wait while all the rest could be part of it.
                if self.eof or pattern.fullmatch(self.text, self.pos, partial=True) is None:
                    self.pos = m.end()
                    return m
            elif self.eof:
                raise _EndOfText
            yield

    def _optional(self, pattern: regex.Pattern) -> Parse:
        try:
            yield from self._match(pattern)
        except (_NoMatch, _EndOfText):
            pass

    def _json_string(self) -> Parse:
        start = self.pos
        if (yield from self._peek()) != '"':
            raise _NoMatch
        i = start + 1
        while True:
            text = self.text
            m = _JSON_STRING_SPECIAL.search(text, i)
            if m is not None and text[m.start()] == '"':
                self.pos = m.end()
                try:
                    return json.loads(text[start:self.pos])
                except ValueError:
                    raise _NoMatch from None
            if m is not None and m.start() + 1 < len(text):
                i = m.start() + 2  # skip the escaped character
                continue
            i = m.start() if m is not None else len(text)
            if self.eof:
                raise _EndOfText
            yield

    def _json_value(self) -> Parse:
        """Consume one JSON value without judging it; its raw text. Only strings and brackets
        are tracked, so invalid JSON inside still ends where its brackets balance."""
        first = yield from self._peek()
        start = self.pos
        if first not in '{["':
            while True:
                m = _JSON_SCALAR_END.search(self.text, self.pos)
                if m is not None or self.eof:
                    end = m.start() if m is not None else len(self.text)
                    if end == start:
                        raise _NoMatch
                    self.pos = end
                    return self.text[start:end]
                yield
        in_string = first == '"'
        depth = 0 if in_string else 1
        i = start + 1
        done = False
        while True:
            text = self.text
            while i < len(text) and not done:
                if in_string:
                    m = _JSON_STRING_SPECIAL.search(text, i)
                    if m is None:
                        i = len(text)
                    elif text[m.start()] == "\\":
                        if m.start() + 1 >= len(text):
                            i = m.start()  # wait for the escaped character
                            break
                        i = m.start() + 2
                    else:
                        i = m.end()
                        in_string = False
                        done = depth == 0
                else:
                    m = _JSON_STRUCTURE.search(text, i)
                    if m is None:
                        i = len(text)
                        break
                    i = m.end()
                    ch = m.group()
                    if ch == '"':
                        in_string = True
                    elif ch in "{[":
                        depth += 1
                    else:
                        depth -= 1
                        done = depth == 0
            if done:
                self.pos = i
                return text[start:i]
            if self.eof:
                self.pos = len(text)
                raise _EndOfText
            yield

    def _python_value(self) -> Parse:
        """Consume the source of one Python argument value, up to a top-level ',' or ')'."""
        start = i = self.pos
        depth = 0
        quote = ""
        while True:
            text = self.text
            while i < len(text):
                if quote:
                    j = text.find(quote, i)
                    k = text.find("\\", i)
                    if k != -1 and (j == -1 or k < j):
                        if k + 1 >= len(text):
                            i = k
                            break
                        i = k + 2
                    elif j == -1:
                        i = max(i, len(text) - len(quote) + 1)
                        break
                    else:
                        i = j + len(quote)
                        quote = ""
                    continue
                m = _PY_STRUCTURE.search(text, i)
                if m is None:
                    i = len(text)
                    break
                ch = m.group()
                if ch in "'\"":
                    if len(text) - m.start() < 3 and not self.eof:
                        i = m.start()  # a triple quote may be starting
                        break
                    quote = ch * 3 if text.startswith(ch * 3, m.start()) else ch
                    i = m.start() + len(quote)
                elif ch in "([{":
                    depth += 1
                    i = m.end()
                elif depth == 0:  # a top-level ',' or closer ends the value
                    self.pos = m.start()
                    return text[start:m.start()]
                else:
                    depth -= ch != ","
                    i = m.end()
            if self.eof:
                self.pos = len(text)
                raise _EndOfText
            yield


def _arguments_json(value: object) -> str | None:
    """Arguments as the text of a JSON object: an object is dumped, a JSON string holding one
    is kept as written, null or an empty string is `{}`; None for anything else."""
    if value is None:
        return "{}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        if not value.strip():
            return "{}"
        try:
            return value if isinstance(strict_loads(value), dict) else None
        except ValueError:
            return None
    return None


def _check_json(raw: str) -> None:
    """_NoMatch unless `raw` is valid JSON."""
    try:
        strict_loads(raw)
    except ValueError:
        raise _NoMatch from None


def python_literal_json(source: str) -> str:
    """JSON text for a Python literal read with `ast` (never evaluated). Anything that is not a
    literal — a name, a call — is kept as its source text, as a JSON string."""
    source = source.strip()
    try:
        return json.dumps(_literal_value(ast.parse(source, mode="eval").body), ensure_ascii=False)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return json.dumps(source, ensure_ascii=False)


_NAMED_CONSTANTS = {"true": True, "false": False, "null": None, "none": None}


def _literal_value(node: ast.expr) -> object:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a JSON number")
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise ValueError("not a JSON literal")
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal_value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("** in a dict literal")
        return {_key(_literal_value(k)): _literal_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal_value(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("sign on a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id.lower() in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id.lower()]
    raise ValueError("not a literal")


def _key(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@cache
def _compiled(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


@cache
def _discard_patterns(fmt: ToolCallFormat) -> tuple[regex.Pattern, regex.Pattern | None]:
    """What `_discard_call` stops at — the format's markers, quotes, escapes and brackets —
    and the markers alone (None: none)."""
    markers = {m for m in (fmt.call_end, fmt.region_end, fmt.call_start, fmt.region_start,
                           *fmt.drop_markers) if len(m) > 1}
    alternatives = [regex.escape(m) for m in sorted(markers, key=len, reverse=True)]
    return (regex.compile("|".join(alternatives + [r'\\[\s\S]', r'["{}\[\]]'])),
            regex.compile("|".join(alternatives)) if alternatives else None)


@cache
def _skip_to_pattern(fmt: ToolCallFormat, end: str) -> regex.Pattern:
    _, markers = _discard_patterns(fmt)
    return regex.compile(regex.escape(end) + ("|" + markers.pattern if markers else ""))


@cache
def _repeated(marker: str) -> regex.Pattern:
    return regex.compile(r"(?:\s*" + regex.escape(marker) + ")+")


@cache
def _closing(marker: str, junk: str = _CLOSING_JUNK) -> regex.Pattern:
    """A closing marker after stray brackets, and any stray repeats of it."""
    return regex.compile(junk + regex.escape(marker) + r"(?:\s*" + regex.escape(marker) + ")*")


@cache
def _xml_key_pattern(suffix: str) -> regex.Pattern:
    """A name or key: up to its closing tag (or, with none, to whitespace or a tag)."""
    if not suffix:
        return _XML_NAME
    return regex.compile(f"[^{regex.escape(suffix[0])}<>\n]+")


@cache
def _xml_value_end(enc: XmlParameters) -> regex.Pattern:
    ends = [m for m in (enc.value_suffix, enc.key_prefix, enc.call_suffix) if m]
    return regex.compile("|".join(regex.escape(m) for m in ends))


def _properties(schema: dict | None) -> dict:
    properties = (schema or {}).get("properties")
    return properties if isinstance(properties, dict) else {}


def _schema_types(schema: object) -> set[str]:
    """The JSON types a schema allows (from `type`, `enum`/`const`, `anyOf`/`oneOf`)."""
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    types = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    for value in schema.get("enum", []) + ([schema["const"]] if "const" in schema else []):
        types.add({str: "string", bool: "boolean", int: "integer", float: "number",
                   type(None): "null", list: "array", dict: "object"}.get(type(value), "string"))
    for sub in schema.get("anyOf", []) + schema.get("oneOf", []):
        types |= _schema_types(sub)
    return types


def _is_string(schema: object) -> bool:
    """A value the model writes as text stays text: untyped, or a string is allowed."""
    types = _schema_types(schema)
    return not types or "string" in types


def typed_value(text: str, schema: object) -> object:
    """A markup parameter's text as the type its JSON Schema declares: strings stay strings;
    numbers, booleans, null, objects and arrays are parsed (JSON, or Python literals read with
    `ast`); anything that does not parse stays the text."""
    types = _schema_types(schema)
    if not types or "string" in types:
        return text
    word = text.strip()
    lowered = word.lower()
    if "null" in types and lowered in ("null", "none"):
        return None
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if types & {"integer", "number"}:
        try:
            return int(word)
        except ValueError:
            pass
        try:
            number = float(word)
            if math.isfinite(number):
                return int(number) if number.is_integer() and "number" not in types else number
        except ValueError:
            pass
    if types & {"object", "array"}:
        try:
            return json.loads(word)
        except ValueError:
            value = json.loads(python_literal_json(word))
            if isinstance(value, (dict, list)):
                return value
    return text


def nested_value(node: str | list, schema: object, enc: NestedXml) -> object:
    """A NestedXml tree as JSON, typed by `schema`: text leaves by `typed_value`; members as an
    array when the schema says so or all are `item` tags, else an object whose repeated keys
    collect into arrays."""
    schema = schema if isinstance(schema, dict) else {}
    types = _schema_types(schema)
    if isinstance(node, str):
        if not node.strip() and types & {"array", "object"} and "string" not in types:
            return [] if "array" in types else {}  # an empty container writes no tags
        return typed_value(node, schema)
    if "array" in types or (node and "object" not in types
                            and all(k == enc.item_tag for k, _ in node)):
        items = schema.get("items")
        return [nested_value(v, items, enc) for _, v in node]
    properties = _properties(schema)
    out: dict = {}
    repeated: set[str] = set()
    for key, value in node:
        value = nested_value(value, properties.get(key), enc)
        if key not in out:
            out[key] = value
        elif isinstance(out[key], list) and key in repeated:
            out[key].append(value)
        else:
            out[key] = [out[key], value]
            repeated.add(key)
    return out
