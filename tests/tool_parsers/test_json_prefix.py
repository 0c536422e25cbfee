"""The incremental JSON validator against an independent oracle: a recursive regular expression
for JSON whose partial matches say whether text can still become valid JSON; jiter's partial
mode and json.loads as second opinions."""

import json
import random

import jiter
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from callm.tool_parsers.json_prefix import (DONE, ERROR, MORE, JsonPrefix, check_prefix,
                                            is_json_prefix, json_closer)

_WS = r"[ \t\n\r]*"
_STR = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_NUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_VALUE = (rf"(?:{_STR}|{_NUM}|true|false|null"
          rf"|\{{{_WS}(?:{_STR}{_WS}:{_WS}(?&v){_WS}(?:,{_WS}{_STR}{_WS}:{_WS}(?&v){_WS})*)?\}}"
          rf"|\[{_WS}(?:(?&v){_WS}(?:,{_WS}(?&v){_WS})*)?\])")
ORACLE = regex.compile(rf"{_WS}(?P<v>{_VALUE})")
ORACLE_TEXT = regex.compile(rf"{_WS}(?P<v>{_VALUE}){_WS}")  # whitespace after the value too


def oracle_prefix(text: str) -> bool:
    """Some continuation makes `text` one JSON value (leading whitespace allowed)."""
    return ORACLE.fullmatch(text, partial=True) is not None


def oracle_complete(text: str) -> bool:
    m = ORACLE.fullmatch(text)
    return m is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12)


def spaced(value, rng: random.Random) -> str:
    """`value` as JSON with random whitespace between tokens and escapes in strings."""
    if isinstance(value, dict):
        items = [spaced(k, rng) + ws(rng) + ":" + ws(rng) + spaced(v, rng)
                 for k, v in value.items()]
        return "{" + ws(rng) + ("," + ws(rng)).join(items) + ws(rng) + "}"
    if isinstance(value, list):
        return "[" + ws(rng) + ("," + ws(rng)).join(spaced(v, rng) for v in value) + ws(rng) + "]"
    return json.dumps(value, ensure_ascii=rng.random() < 0.5)


def ws(rng: random.Random) -> str:
    return rng.choice(["", "", " ", "\n  ", "\t"])


def feed_chunks(text: str, cuts: list[int]) -> JsonPrefix:
    checker = JsonPrefix()
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    for a, b in zip(points, points[1:]):
        checker.feed(text[a:b])
    return checker


@settings(max_examples=300, deadline=None)
@given(value=json_values, seed=st.integers(0, 10**6))
def test_every_prefix_of_valid_json(value, seed):
    """Every prefix is MORE, the whole is DONE; up to `safe` the closer completes it."""
    rng = random.Random(seed)
    text = spaced(value, rng)
    assert check_prefix(text).status == DONE or not isinstance(value, (dict, list, str))
    assert check_prefix(text).finish() == DONE
    last_safe = 0
    for n in range(len(text)):
        prefix = text[:n]
        checker = check_prefix(prefix)
        assert checker.status == MORE, (prefix, checker.status)
        assert is_json_prefix(prefix)
        assert checker.safe >= last_safe and checker.safe <= n
        last_safe = checker.safe
        if checker.safe and (checker.stack or checker.safe_in_string):
            closed = prefix[:checker.safe] + checker.closer()
            json.loads(closed)
            if isinstance(value, (dict, list)):
                jiter.from_json(prefix.encode(), partial_mode="trailing-strings")
        closer = json_closer(prefix)
        if closer is not None:
            json.loads(prefix + closer)


@settings(max_examples=300, deadline=None)
@given(value=json_values, seed=st.integers(0, 10**6),
       cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_chunked_feeding_equals_whole(value, seed, cuts):
    text = spaced(value, random.Random(seed))
    for n in {len(text), len(text) // 2, len(text) * 2 // 3}:
        whole, chunked = check_prefix(text[:n]), feed_chunks(text[:n], cuts)
        assert (chunked.status, chunked.safe, chunked.closer(), chunked.end, chunked.error) == (
            whole.status, whole.safe, whole.closer(), whole.end, whole.error)


NOISE = list(' \t\n"\\{}[],:0123456789.-+eEtrufalsn/x\x01') + ["\\u", "tru", "nul", "1.", "é"]


@settings(max_examples=600, deadline=None)
@given(value=json_values, seed=st.integers(0, 10**6),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(NOISE),
                                st.booleans()), min_size=1, max_size=3),
       cuts=st.lists(st.integers(0, 10_000), max_size=6))
def test_damaged_json_against_the_oracle(value, seed, edits, cuts):
    """Random insertions and replacements: the validator agrees with the oracle on where the
    text stops being a JSON prefix, and on whether it is a complete value."""
    text = spaced(value, random.Random(seed))
    for at, piece, replace in edits:
        at %= len(text) + 1
        text = text[:at] + piece + text[at + replace:]
    checker = feed_chunks(text, cuts)
    if checker.status == ERROR:
        assert oracle_prefix(text[:checker.error])
        assert not oracle_prefix(text[:checker.error + 1])
        closed = text[:checker.safe] + checker.closer()
        if checker.safe and (checker.stack or checker.safe_in_string):
            json.loads(closed)
    elif checker.status == DONE:
        assert oracle_complete(text[:checker.end])
        json.loads(text[:checker.end])
    else:
        assert oracle_prefix(text)
    assert is_json_prefix(text) == (ORACLE_TEXT.fullmatch(text, partial=True) is not None)


@pytest.mark.parametrize("text,status,safe,closer", [
    ('{"a": 1', MORE, 1, "}"),
    ('{"a": 1.', MORE, 1, "}"),
    ('{"a": 1.5e', MORE, 1, "}"),
    ('{"a": -', MORE, 1, "}"),
    ('{"a": tru', MORE, 1, "}"),
    ('{"a": true', MORE, 1, "}"),
    ('{"a": true ', MORE, 10, "}"),
    ('{"a": truex}', ERROR, 1, "}"),
    ('{"a": 1.5.2}', ERROR, 1, "}"),
    ('{"a": [1, 2.5]', MORE, 14, "}"),
    ('{"a": 1, ', MORE, 7, "}"),
    ('{"a": 1, "b": ', MORE, 7, "}"),
    ('{"a": "xy', MORE, 9, '"}'),
    ('{"a": "x\\u00', MORE, 8, '"}'),
    ('{"a": [1, {"b": ["c', MORE, 19, '"]}]}'),
    ('{"a": 1, b: 2}', ERROR, 7, "}"),
    ('{"a": tru}', ERROR, 1, "}"),
    ('{"a": "x"]', ERROR, 9, "}"),
    ('{"a": 01}', ERROR, 1, "}"),
    ('{"a": "x\ny"}', ERROR, 8, '"}'),
    ('{"a": NaN}', ERROR, 1, "}"),
    ('{"a": [1,]}', ERROR, 8, "]}"),
    ('{"a": {"b": 1}}', DONE, 15, ""),
])
def test_examples(text, status, safe, closer):
    checker = check_prefix(text)
    assert (checker.status, checker.safe, checker.closer()) == (status, safe, closer)
    chars = JsonPrefix()
    for ch in text:
        chars.feed(ch)
    assert (chars.status, chars.safe, chars.closer()) == (status, safe, closer)


def test_closer_and_prefix_helpers():
    assert json_closer('{"a": [1, "x') == '"]}'
    assert json_closer('{"a": 1}') == ""
    assert json_closer('{"a": 1} ') == ""
    assert json_closer('{"a": 1 ') == "}"
    assert json_closer('{"a": 1') == "}" and json_closer('{"a": [true') == "]}"
    assert json_closer('{"a": 1,') is None
    assert json_closer('{"a": 1.') is None
    assert json_closer('{"a": x') is None
    assert json_closer("") is None
    assert is_json_prefix('{"a": tr') and not is_json_prefix('{"a": tx')
    assert not is_json_prefix('{"a": 1}}')


def test_done_stops_at_the_value_end():
    checker = JsonPrefix()
    text = '{"a": [1, 2]} trailing'
    assert checker.scan(text, 0, len(text)) == 13 and checker.status == DONE and checker.end == 13
    chars = JsonPrefix()
    for ch in text:
        chars.feed(ch)
    assert chars.end == 13


def test_long_input_is_linear():
    """A 1 MB string value fed one character at a time, and digits, stay fast."""
    import time

    body = "x" * 200_000
    for text in ('{"a": "' + body + '"}', '{"a": ' + "1" * 200_000 + "}"):
        checker = JsonPrefix()
        t = time.perf_counter()
        for i in range(0, len(text), 7):
            checker.feed(text[i:i + 7])
        assert checker.status == DONE
        assert time.perf_counter() - t < 2.0
