"""Hypothesis fuzz: no parser raises on arbitrary text at arbitrary chunkings, and streaming
still equals the non-streaming result. One run per parser class (aliases share a class); the
random text is built from every family's literal markers, so each parser also meets the
others' markup."""

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_fixtures import FIXTURES, request_with_tools
from streaming_parity import format_markers, parse_stream, parse_whole

from callm.tool_parsers import ToolParserManager

# Pieces that steer random text into the parsers' interesting states.
FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<tool_", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[TOOL",
    "<|python_tag|>", "<|python_start|>", "<|python_end|>", "```json", "```", "\n",
    '{"name": "get_weather", "arguments": ', '{"name": ', '"get_time"', '"parameters": ',
    "get_weather(", "get_time", "city=", "'Paris'", '"Paris"', "{", "}", "[", "]", "(", ")",
    ",", ";", ":", '"', "'", "\\", "'''", " ", "1", "-2.5", "true", "None", "é", "🌧️", "東",
    "search_docs", "set_options", "get_time(", "=", ">", "</", "<", "\\n", "null", "{}", "[]",
    "functions.get_time:0", "<|", "|>", "｜", "▁", "<|\"|>",
]
PARSER_CLASSES = {name: ToolParserManager.get_tool_parser(name) for name in sorted(FIXTURES)}
MARKERS = {name: format_markers(cls) + format_markers(cls, split=False)
           for name, cls in PARSER_CLASSES.items()}
# Every family's markers, whole and split into their special tokens, and their prefixes.
ALL_MARKERS = sorted({m for markers in MARKERS.values() for m in markers})
FRAGMENTS += ALL_MARKERS + sorted({m[:len(m) // 2] for m in ALL_MARKERS if len(m) > 3})


def texts(parser_name: str):
    """Random text, weighted towards the parser's own markers."""
    own = st.sampled_from(MARKERS[parser_name] or FRAGMENTS)
    pieces = st.one_of(own, own, st.sampled_from(FRAGMENTS), st.text(max_size=4))
    return st.lists(pieces, max_size=30).map("".join)


class _Errors(logging.Handler):
    """Parser bugs are caught and logged (the request degrades to text); the fuzz must see them."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


_errors = _Errors()
logging.getLogger("callm.tool_parsers").addHandler(_errors)


def _chunk(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:]) if b > a]


@pytest.mark.parametrize("parser_name", sorted(FIXTURES))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_never_raises_and_streams_like_whole(parser_name, data, cuts):
    parser_cls = PARSER_CLASSES[parser_name]
    text = data.draw(texts(parser_name), label="text")
    request = request_with_tools()
    whole = parse_whole(parser_cls, text, request)
    streamed = parse_stream(parser_cls, _chunk(text, cuts), request)
    assert streamed.normalized() == whole.normalized()
    assert not _errors.records, _errors.records[0].getMessage()


def test_fragments_hold_every_marker():
    """The fuzz text can contain each literal marker of each parser class's formats."""
    assert len(set(PARSER_CLASSES.values())) == len(PARSER_CLASSES)
    for name, cls in PARSER_CLASSES.items():
        for fmt in cls.formats:
            for marker in (fmt.region_start, fmt.region_end, fmt.call_start, fmt.call_end,
                           *fmt.drop_markers):
                assert not marker or marker in FRAGMENTS, (name, marker)
