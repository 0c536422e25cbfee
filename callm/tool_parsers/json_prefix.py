"""Incremental JSON validation: is the text so far the beginning of a valid JSON value?

`JsonPrefix` is fed one JSON value's text piece by piece (any split, one character to all of
it) and keeps in a few fields everything the next piece is judged by: the stack of open
containers, what the grammar expects next, and a token cut off by the end of a piece (a string
escape, a number, a literal). Each character is looked at once, string bodies and digit runs
are skipped by regular expressions, and when a whole valid value is already there it is
checked in one pass by the C JSON scanner — cost is linear in the text whatever the pieces.

Three answers come out of it:

- `status`: `MORE` (a valid prefix so far), `DONE` (a complete value; `end` is where it
  stopped, text after it is not read) or `ERROR` (`error` is the offset of the first character
  that no valid JSON can have there).
- `safe`: the longest prefix read so far that quotes and brackets alone complete — the end of
  the last complete token, or the reading position inside a string value (never inside an
  escape). What lies beyond it is a token that might still turn out valid or not: an object
  key and its colon, a comma, a literal such as `tru`, a number; numbers and literals are
  complete only once what follows shows they ended (`1` may become `12`, `1.` or `01`; `true`
  may become `truex`) — `finish()` ends them at the end of the text.
- `closer()`: the quotes and brackets that complete the text up to `safe`, e.g. `"}]}`.

Strict JSON (RFC 8259): no NaN/Infinity, no trailing commas, no control characters in strings.
"""

import json
import re

MORE, DONE, ERROR = "more", "done", "error"

_WS = re.compile(r"[ \t\n\r]*")
_STRING_BODY = re.compile(r'[^"\\\x00-\x1f]*')
_ESCAPE = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')
_ESCAPE_PREFIX = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_DIGITS = re.compile(r"[0-9]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_CHARS = frozenset("0123456789.eE+-")
# What may follow a value inside a container; a number or literal ends only at one of these
# (`1.5.2`, `01` and `truex` are broken tokens, dropped whole).
_VALUE_END = frozenset(" \t\n\r,]}")
# A run of complete object members with scalar values, each followed by its comma, read in one
# regex step: `"key": "value", "n": 1, ` (the cheap path for flat arguments objects).
_STRING_RE = r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
_SCALAR = (rf"(?:{_STRING_RE}"
           r"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![0-9.eE+-])"
           r"|true|false|null)")
_MEMBER_RUN = re.compile(rf"(?:[ \t\n\r]*{_STRING_RE}[ \t\n\r]*:[ \t\n\r]*{_SCALAR}[ \t\n\r]*,)+")
_ITEM_RUN = re.compile(rf"(?:[ \t\n\r]*{_SCALAR}[ \t\n\r]*,)+")
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_CLOSERS = {"{": "}", "[": "]"}

# Grammar states.
_VALUE = 0  # a value must come (top level start, after ':' or after ',' in an array)
_VALUE_OR_CLOSE = 1  # after '['
_KEY_OR_CLOSE = 2  # after '{'
_KEY_NEXT = 3  # after ',' in an object
_COLON = 4  # after a key
_AFTER = 5  # after a value in a container: ',' or the closer
_STRING = 6  # inside a string value
_KEY_STRING = 7  # inside a key
_NUMBER_STATE = 8  # inside a number (see `_num`)
_LITERAL = 9  # inside true/false/null
_LITERAL_READ = 10  # after a literal, before the character that shows it ended
_END = 11  # DONE or ERROR

# Number sub-states; the complete ones may end the number.
_N_MINUS, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(8)
_N_COMPLETE = frozenset((_N_ZERO, _N_INT, _N_FRAC, _N_EXP))
_DIGIT_NEXT = {_N_INT: _N_INT, _N_DOT: _N_FRAC, _N_FRAC: _N_FRAC, _N_E: _N_EXP, _N_ESIGN: _N_EXP,
               _N_EXP: _N_EXP}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


class JsonPrefix:
    """Validates one JSON value fed in pieces; offsets count characters from the value's start
    (its first character; leading whitespace counts too)."""

    __slots__ = ("status", "length", "safe", "safe_in_string", "end", "error", "error_in_string",
                 "stack", "_state", "_escape", "_num", "_literal", "_started")

    def __init__(self):
        self.status = MORE
        self.length = 0  # characters read
        self.safe = 0
        self.safe_in_string = False
        self.end = -1  # DONE: the offset just past the value
        self.error = -1  # ERROR: the offset of the first invalid character
        self.error_in_string = False  # ERROR: that character is inside a string or key
        self.stack: list[str] = []  # open containers, "{" or "["
        self._state = _VALUE
        self._escape = ""  # a string escape cut off by the end of a piece
        self._num = _N_MINUS
        self._literal = ""  # the rest of a literal still to come
        self._started = False

    def feed(self, chunk: str) -> str:
        """Read the next piece; the status."""
        self.scan(chunk, 0, len(chunk))
        return self.status

    def finish(self) -> str:
        """No more text: a complete number ends here (a top-level one is DONE); anything else
        unfinished stays MORE (a valid prefix, not a value)."""
        if self.status == MORE and (self._state == _LITERAL_READ or (
                self._state == _NUMBER_STATE and self._num in _N_COMPLETE)):
            self.safe, self.safe_in_string = self.length, False
            if not self.stack:
                self.status, self.end, self._state = DONE, self.length, _END
            else:
                self._state = _AFTER
        return self.status

    def closer(self) -> str:
        """The text that completes the prefix up to `safe` ("" once DONE)."""
        if self.status == DONE:
            return ""
        return ('"' if self.safe_in_string else "") + "".join(
            _CLOSERS[c] for c in reversed(self.stack))

    def scan(self, text: str, pos: int, end: int) -> int:
        """Read `text[pos:end]`, the next piece of the value; return where reading stopped:
        `end`, just past the value (DONE) or at the first invalid character (ERROR)."""
        if self._state == _END or pos >= end:
            return pos
        base = self.length - pos  # offset = base + index into text
        if not self._started:
            self._started = True
            i = _WS.match(text, pos, end).end()
            if i < end and text[i] in "{[":  # the whole value may be here: one C pass
                try:
                    _, stop = _DECODER.raw_decode(text if end == len(text) else text[:end], i)
                except (ValueError, RecursionError):
                    pass
                else:
                    self.status, self._state = DONE, _END
                    self.length = self.safe = self.end = base + stop
                    return stop
        i = pos
        state = self._state
        stack = self.stack
        while i < end:
            if state == _STRING or state == _KEY_STRING:
                if self._escape:
                    i = self._continue_escape(text, i, end, base, state)
                    if self._state == _END:
                        return i
                    if self._escape:
                        break
                    continue
                i = _STRING_BODY.match(text, i, end).end()
                if state == _STRING:
                    self.safe, self.safe_in_string = base + i, True
                if i >= end:
                    break
                c = text[i]
                if c == '"':
                    i += 1
                    if state == _KEY_STRING:
                        state = _COLON
                        continue
                    self.safe, self.safe_in_string = base + i, False
                    if not stack:
                        return self._done(base, i)
                    state = _AFTER
                elif c == "\\":
                    m = _ESCAPE.match(text, i, end)
                    if m is not None:
                        i = m.end()
                        continue
                    m = _ESCAPE_PREFIX.match(text, i, end)
                    if m.end() < end:  # an escape no JSON has
                        return self._fail(base, m.end(), state)
                    self._escape = text[i:end]
                    i = end
                else:  # a control character
                    return self._fail(base, i, state)
                continue
            if state == _AFTER:
                i = _WS.match(text, i, end).end()
                if i >= end:
                    break
                c = text[i]
                top = stack[-1]
                if c == ",":
                    i += 1
                    if top == "{":
                        m = _MEMBER_RUN.match(text, i, end)
                        if m is not None:
                            self.safe, self.safe_in_string = base + _before_comma(text, m.end()), False
                            i = m.end()
                        state = _KEY_NEXT
                    else:
                        m = _ITEM_RUN.match(text, i, end)
                        if m is not None:
                            self.safe, self.safe_in_string = base + _before_comma(text, m.end()), False
                            i = m.end()
                        state = _VALUE
                elif c == _CLOSERS[top]:
                    i += 1
                    stack.pop()
                    self.safe, self.safe_in_string = base + i, False
                    if not stack:
                        return self._done(base, i)
                else:
                    return self._fail(base, i, state)
                continue
            if state == _KEY_OR_CLOSE or state == _KEY_NEXT:
                i = _WS.match(text, i, end).end()
                if i >= end:
                    break
                c = text[i]
                if c == '"':
                    i += 1
                    state = _KEY_STRING
                elif c == "}" and state == _KEY_OR_CLOSE:
                    i += 1
                    stack.pop()
                    self.safe, self.safe_in_string = base + i, False
                    if not stack:
                        return self._done(base, i)
                    state = _AFTER
                else:
                    return self._fail(base, i, state)
                continue
            if state == _COLON:
                i = _WS.match(text, i, end).end()
                if i >= end:
                    break
                if text[i] != ":":
                    return self._fail(base, i, state)
                i += 1
                state = _VALUE
                continue
            if state == _VALUE or state == _VALUE_OR_CLOSE:
                i = _WS.match(text, i, end).end()
                if i >= end:
                    break
                c = text[i]
                if c == '"':
                    i += 1
                    state = _STRING
                    self.safe, self.safe_in_string = base + i, True
                elif c == "{":
                    i += 1
                    stack.append(c)
                    state = _KEY_OR_CLOSE
                    self.safe, self.safe_in_string = base + i, False
                    m = _MEMBER_RUN.match(text, i, end)
                    if m is not None:
                        self.safe = base + _before_comma(text, m.end())
                        i = m.end()
                        state = _KEY_NEXT
                elif c == "[":
                    i += 1
                    stack.append(c)
                    state = _VALUE_OR_CLOSE
                    self.safe, self.safe_in_string = base + i, False
                elif c == "]" and state == _VALUE_OR_CLOSE:
                    i += 1
                    stack.pop()
                    self.safe, self.safe_in_string = base + i, False
                    if not stack:
                        return self._done(base, i)
                    state = _AFTER
                elif c == "-" or "0" <= c <= "9":
                    m = _NUMBER.match(text, i, end)
                    if m is not None and m.end() < end and (
                            text[m.end()] in _VALUE_END or not stack and
                            text[m.end()] not in _NUMBER_CHARS):
                        i = m.end()  # a whole number, and what follows is not part of it
                        self.safe, self.safe_in_string = base + i, False
                        if not stack:
                            return self._done(base, i)
                        state = _AFTER
                    else:
                        state = _NUMBER_STATE
                        self._num = _N_MINUS
                        if c == "-":
                            i += 1
                elif c in _LITERALS:
                    state = _LITERAL
                    self._literal = _LITERALS[c]
                else:
                    return self._fail(base, i, state)
                continue
            if state == _NUMBER_STATE:
                i, ended = self._number(text, i, end, base)
                if self._state == _END:
                    return i
                if ended:
                    if not stack:
                        return self._done(base, i)
                    state = _AFTER
                continue
            if state == _LITERAL:
                rest = self._literal
                n = min(len(rest), end - i)
                if text.startswith(rest[:n], i):
                    i += n
                    self._literal = rest = rest[n:]
                    if not rest:
                        if not stack:
                            self.safe, self.safe_in_string = base + i, False
                            return self._done(base, i)
                        state = _LITERAL_READ
                    continue
                k = 0
                while text[i + k] == rest[k]:
                    k += 1
                return self._fail(base, i + k, state)
            if state == _LITERAL_READ:
                if text[i] not in _VALUE_END:
                    return self._fail(base, i, state)
                self.safe, self.safe_in_string = base + i, False
                state = _AFTER
                continue
        self._state = state
        self.length = base + end
        return end

    # ----- helpers of scan -----

    def _done(self, base: int, i: int) -> int:
        self.status, self._state = DONE, _END
        self.length = self.end = base + i
        return i

    def _fail(self, base: int, i: int, state: int) -> int:
        self.error_in_string = state == _STRING or state == _KEY_STRING
        self.status, self._state = ERROR, _END
        self.length = self.error = base + i
        return i

    def _continue_escape(self, text: str, i: int, end: int, base: int, state: int) -> int:
        """Extend an escape cut off at the end of the previous piece."""
        while i < end:
            candidate = self._escape + text[i]
            if _ESCAPE.fullmatch(candidate):
                self._escape = ""
                return i + 1
            if not _ESCAPE_PREFIX.fullmatch(candidate):
                return self._fail(base, i, state)
            self._escape = candidate
            i += 1
        return i

    def _number(self, text: str, i: int, end: int, base: int) -> tuple[int, bool]:
        """Continue a number; (position, whether the number ended just before it)."""
        n = self._num
        while i < end:
            c = text[i]
            if "0" <= c <= "9":
                if n == _N_ZERO:
                    break  # no leading zeros
                if n == _N_MINUS:
                    n = _N_ZERO if c == "0" else _N_INT
                    i += 1
                else:
                    n = _DIGIT_NEXT[n]
                    i = _DIGITS.match(text, i, end).end()
            elif n in _N_COMPLETE:
                if c == "." and (n == _N_INT or n == _N_ZERO):
                    n = _N_DOT
                elif c in "eE" and n != _N_EXP:
                    n = _N_E
                elif c in _VALUE_END or not self.stack:  # the number ended
                    self._num = n
                    self.safe, self.safe_in_string = base + i, False
                    return i, True
                else:
                    break
                i += 1
            elif n == _N_E and c in "+-":
                n = _N_ESIGN
                i += 1
            else:
                break
        else:
            self._num = n
            return i, False
        self._num = n
        return self._fail(base, i, _NUMBER_STATE), False


def _before_comma(text: str, end: int) -> int:
    """The end of the value before the comma at `end - 1` (whitespace may sit between)."""
    i = end - 1
    while text[i - 1] in " \t\n\r":
        i -= 1
    return i


def strict_loads(text: str) -> object:
    """json.loads without NaN and Infinity, which JSON does not have."""
    return _DECODER.decode(text)


def check_prefix(text: str) -> JsonPrefix:
    """`text` read as a whole (not finished: a trailing number may still grow)."""
    checker = JsonPrefix()
    checker.feed(text)
    return checker


def is_json_prefix(text: str) -> bool:
    """Whether some text appended to `text` makes one valid JSON value (`text` may already be
    one, trailing whitespace allowed)."""
    checker = check_prefix(text)
    return checker.status == MORE or (checker.status == DONE
                                      and _WS.fullmatch(text, checker.end) is not None)


def json_closer(text: str) -> str | None:
    """The quotes and brackets that complete `text` into one JSON value: "" when it is one
    already, None when appending them cannot (invalid JSON, or it ends within a token, like
    `{"a": 1.` or `{"a": 1,`)."""
    checker = check_prefix(text)
    if checker.status == MORE:
        checker.finish()
    if checker.status == DONE:
        return "" if _WS.fullmatch(text, checker.end) else None
    if checker.status == ERROR or not (checker.stack or checker.safe_in_string):
        return None
    if _WS.fullmatch(text, checker.safe) is None:  # ends within a token
        return None
    return checker.closer()


def close_json(text: str) -> str:
    """`text` completed by `json_closer` when quotes and brackets can complete it; otherwise
    (complete already, or not closable) unchanged."""
    closer = json_closer(text)
    return text + closer if closer else text
