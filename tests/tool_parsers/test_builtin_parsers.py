"""Every fixture of every built-in parser: the expected calls and content, and the same result
when streamed at every chunking."""

import json

import pytest
from parser_fixtures import FIXTURES, XFAIL, request_with_tools
from streaming_parity import (assert_streaming_parity, format_markers, marker_chunkings,
                              parse_stream, parse_whole)

from callm.tool_parsers import ToolParserManager

CASES = [pytest.param(name, *case, id=f"{name}-{case[0]}",
                      marks=[pytest.mark.xfail(strict=True, reason=XFAIL[name, case[0]])]
                      if (name, case[0]) in XFAIL else [])
         for name, cases in FIXTURES.items() for case in cases]


@pytest.mark.parametrize("parser_name,case_id,output,expected_calls,expected_content", CASES)
def test_fixture(parser_name, case_id, output, expected_calls, expected_content):
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    request = request_with_tools()
    result = assert_streaming_parity(parser_cls, output, request,
                                     markers=format_markers(parser_cls))
    got = [(name, json.loads(args) if isinstance(expected[1], dict) else args)
           for (name, args), expected in zip(result.calls, expected_calls)]
    assert got == [tuple(expected[:2]) for expected in expected_calls]
    assert len(result.calls) == len(expected_calls)
    assert result.content == expected_content
    written_ids = [(i, expected[2]) for i, expected in enumerate(expected_calls)
                   if len(expected) > 2]
    if written_ids:  # the model wrote the call ids: they are the OpenAI ids, streamed or not
        streamed = parse_stream(parser_cls, list(output), request)
        for i, call_id in written_ids:
            assert result.ids[i] == streamed.ids[i] == call_id


def test_every_family_meets_its_markers_as_single_deltas():
    """Each family's fixtures contain its markers, so the marker chunkings in `test_fixture`
    really deliver them as single deltas (as a tokenizer with marker tokens does)."""
    for name, cases in FIXTURES.items():
        parser_cls = ToolParserManager.get_tool_parser(name)
        markers = format_markers(parser_cls)
        if not markers:
            continue
        assert any(list(marker_chunkings(output, markers)) for _, output, *_ in cases), name


@pytest.mark.parametrize("parser_name", sorted(FIXTURES))
def test_several_whole_calls_in_one_delta(parser_name):
    """All parallel fixtures at once after some content, in one delta and then token-sized."""
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    for case_id, output, calls, _ in FIXTURES[parser_name]:
        if len(calls) > 1 and (parser_name, case_id) not in XFAIL:
            whole = parse_whole(parser_cls, output, request_with_tools())
            assert parse_stream(parser_cls, [output], request_with_tools()) == whole
            assert [c[0] for c in whole.calls] == [c[0] for c in calls]


def test_hermes_drift_needs_a_requested_tool():
    """Bare JSON naming a tool the request does not have stays content."""
    parser_cls = ToolParserManager.get_tool_parser("hermes")
    output = '{"name": "get_weather", "arguments": {"city": "Tokyo"}}'
    only_time = request_with_tools([t for t in request_with_tools().tools
                                    if t.function.name == "get_time"])
    assert parse_whole(parser_cls, output, only_time).calls == []
    assert parse_whole(parser_cls, output, only_time).content == output


def test_tagged_hermes_call_to_unknown_tool_is_still_a_call():
    """With explicit tags the model meant a call; the client decides what to do with it."""
    parser_cls = ToolParserManager.get_tool_parser("hermes")
    out = '<tool_call>{"name": "launch", "arguments": {}}</tool_call>'
    assert parse_whole(parser_cls, out, request_with_tools()).calls == [("launch", "{}")]


def test_ids_are_unique_and_mistral_ids_are_nine_alphanumerics():
    output = '[TOOL_CALLS]get_time{}[TOOL_CALLS]get_time{}[TOOL_CALLS]get_time{}'
    parser = ToolParserManager.get_tool_parser("mistral")(None)
    calls = parser.extract_tool_calls(output, request_with_tools()).tool_calls
    assert len({c.id for c in calls}) == 3
    assert all(len(c.id) == 9 and c.id.isalnum() for c in calls)
    hermes = ToolParserManager.get_tool_parser("hermes")(None)
    info = hermes.extract_tool_calls(FIXTURES["hermes"][1][1], request_with_tools())
    assert len({c.id for c in info.tool_calls}) == 2


def test_adjust_request_keeps_special_tokens_when_tools_are_used():
    parser = ToolParserManager.get_tool_parser("hermes")(None)
    assert parser.adjust_request(request_with_tools()).skip_special_tokens is False


def test_pythonic_arguments_are_never_evaluated(tmp_path):
    """A call expression in an argument is data: kept as its source text, not run."""
    marker = tmp_path / "ran"
    output = f"[search_docs(query=open({str(marker)!r}, 'w').write('x'))]"
    parser = ToolParserManager.get_tool_parser("pythonic")(None)
    info = parser.extract_tool_calls(output, request_with_tools())
    assert json.loads(info.tool_calls[0].function.arguments)["query"].startswith("open(")
    assert not marker.exists()


def test_arguments_stream_before_the_call_ends():
    """A long argument arrives in pieces, not held back until the call closes."""
    parser = ToolParserManager.get_tool_parser("hermes")(None)
    req = request_with_tools()
    head = '<tool_call>\n{"name": "search_docs", "arguments": {"query": "'
    text = head
    seen = ""
    for word in ["streamed ", "arguments ", "arrive ", "early"]:
        prev, text = text, text + word
        delta = parser.extract_tool_calls_streaming(prev, text, word, [], [], [], req)
        seen += "".join(tc.function.arguments or "" for tc in (delta.tool_calls if delta else []))
        assert seen.endswith(word), seen
