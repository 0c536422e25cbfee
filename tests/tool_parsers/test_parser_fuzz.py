"""Hypothesis fuzz: no parser raises on arbitrary text at arbitrary chunkings, and streaming
still equals the non-streaming result."""

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_fixtures import FIXTURES, request_with_tools
from streaming_parity import parse_stream, parse_whole

from callm.tool_parsers import ToolParserManager

# Pieces that steer random text into the parsers' interesting states.
FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<tool_", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[TOOL",
    "<|python_tag|>", "<|python_start|>", "<|python_end|>", "```json", "```", "\n",
    '{"name": "get_weather", "arguments": ', '{"name": ', '"get_time"', '"parameters": ',
    "get_weather(", "get_time", "city=", "'Paris'", '"Paris"', "{", "}", "[", "]", "(", ")",
    ",", ";", ":", '"', "'", "\\", "'''", " ", "1", "-2.5", "true", "None", "é", "🌧️", "東",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map(
    "".join)


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
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_never_raises_and_streams_like_whole(parser_name, text, cuts):
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    request = request_with_tools()
    whole = parse_whole(parser_cls, text, request)
    streamed = parse_stream(parser_cls, _chunk(text, cuts), request)
    assert streamed.normalized() == whole.normalized()
    assert not _errors.records, _errors.records[0].getMessage()
