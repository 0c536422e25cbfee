"""What clients get is always usable: every call's arguments are a JSON object that json.loads
accepts, a stream never sends argument text that is not a valid JSON prefix (and equals the whole
response at every chunking), markup never leaks into content, and Llama 3's calls amid text are
all read with the text kept.

Arguments that turn invalid keep their longest valid part, closed (`{"city": "Paris", b: 2}` ->
`{"city": "Paris"}`), and the rest of the call is discarded; see `markup_stream`'s docstring.
"""

import json

import jiter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_fixtures import request_with_tools
from streaming_parity import (assert_streaming_parity, chunkings, format_markers,
                              marker_chunkings, parse_whole)
from test_json_prefix import oracle_prefix

from callm.tool_parsers import ToolParserManager
from callm.tool_parsers.json_prefix import is_json_prefix, json_closer

REQUEST = request_with_tools()

# Arguments that go wrong part-way, and what the call keeps.
INVALID = [
    ("bare_key", '{"city": "Paris", b: 2}', {"city": "Paris"}),
    ("cut_literal", '{"city": tru}', {}),
    ("wrong_closer", '{"city": "x"]', {"city": "x"}),
    ("newline_in_string", '{"city": "x\ny"}', {"city": "x"}),
    ("leading_zero", '{"city": 01}', {}),
    ("trailing_comma", '{"city": "a", "unit": [1,]}', {"city": "a", "unit": [1]}),
    ("bad_escape", '{"city": "ab\\q"}', {"city": "ab"}),
    ("nan", '{"city": "Rome", "unit": NaN}', {"city": "Rome"}),
    ("number_then_junk", '{"unit": 1.5.2, "city": "Oslo"}', {}),
    ("two_values", '{"city": "Oslo" "Rome"}', {"city": "Oslo"}),
]


def hermes(args):
    return ("<tool_call>\n" '{"name": "get_weather", "arguments": ' + args + "}\n</tool_call>\n"
            '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\nDone.')


def mistral_list(args):
    return ('[TOOL_CALLS][{"name": "get_weather", "arguments": ' + args + '}, '
            '{"name": "get_time", "arguments": {}}] Done.')


def mistral_v11(args):
    return "[TOOL_CALLS]get_weather[ARGS]" + args + "[TOOL_CALLS]get_time[ARGS]{} Done."


def llama3_tagged(args):
    return ('<|python_tag|>{"name": "get_weather", "parameters": ' + args + '}; '
            '{"name": "get_time", "parameters": {}}')


def llama3_in_text(args):
    return ('Let me check. {"name": "get_weather", "parameters": ' + args + '} '
            '{"name": "get_time", "parameters": {}} Done.')


def kimi_k2(args):
    return ("<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
            "<|tool_call_argument_begin|>" + args + "<|tool_call_end|><|tool_call_begin|>"
            "functions.get_time:1<|tool_call_argument_begin|>{}<|tool_call_end|>"
            "<|tool_calls_section_end|>Done.")


def deepseek_v31(args):
    return ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>" + args
            + "<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜>"
            "<｜tool▁calls▁end｜>Done.")


def harmony(args):
    return ("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + args
            + "<|call|><|start|>assistant<|channel|>commentary to=functions.get_time "
            "<|constrain|>json<|message|>{}<|call|><|start|>assistant<|channel|>final"
            "<|message|>Done.<|return|>")


FAMILIES = [("hermes", hermes), ("mistral", mistral_list), ("mistral", mistral_v11),
            ("llama3_json", llama3_tagged), ("llama3_json", llama3_in_text),
            ("kimi_k2", kimi_k2), ("deepseek_v31", deepseek_v31), ("openai", harmony)]
FAMILY_IDS = [f"{parser}-{render.__name__}" for parser, render in FAMILIES]


def stream_checked(parser_cls, deltas: list[str], request=REQUEST) -> dict[int, str]:
    """Stream `deltas`; after every delta each call's arguments so far must be a valid JSON
    prefix (by `json_prefix`, by an independent regex oracle, and by jiter's partial mode).
    The final arguments per call index."""
    parser = parser_cls(None)
    arguments: dict[int, str] = {}
    previous = ""
    for delta in [*deltas, None]:
        if delta is None:
            message = parser.finish_streaming(request)
        else:
            current = previous + delta
            message = parser.extract_tool_calls_streaming(previous, current, delta, [], [], [],
                                                          request)
            previous = current
        for tool_call in message.tool_calls if message else []:
            fragment = tool_call.function.arguments or ""
            arguments[tool_call.index] = arguments.get(tool_call.index, "") + fragment
        for text in arguments.values():
            if text:
                assert is_json_prefix(text), text
                assert oracle_prefix(text), text
                jiter.from_json(text.encode(), partial_mode="trailing-strings")
    return arguments


def assert_usable(parser_cls, output: str) -> object:
    """Stream == whole at every chunking, every streamed prefix valid, final arguments JSON
    objects; the whole result."""
    whole = assert_streaming_parity(parser_cls, output, REQUEST,
                                    markers=format_markers(parser_cls))
    for name, args in whole.calls:
        assert isinstance(json.loads(args), dict), (name, args)
    for deltas in [*chunkings(output, all_splits=False), *marker_chunkings(
            output, format_markers(parser_cls))]:
        streamed = stream_checked(parser_cls, deltas)
        assert [json.loads(streamed[i]) for i in sorted(streamed)] == [
            json.loads(args) for _, args in whole.calls]
    return whole


@pytest.mark.parametrize("case_id,args,kept", INVALID, ids=[c[0] for c in INVALID])
@pytest.mark.parametrize("parser_name,render", FAMILIES, ids=FAMILY_IDS)
def test_arguments_turning_invalid(parser_name, render, case_id, args, kept):
    """The broken call keeps its valid part, closed; the next call and the content survive; no
    markup leaks."""
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    whole = assert_usable(parser_cls, render(args))
    assert [(name, json.loads(a)) for name, a in whole.calls] == [("get_weather", kept),
                                                                   ("get_time", {})]
    # The content is what the same output with valid arguments gives.
    assert whole.content == parse_whole(parser_cls, render('{"city": "x"}'), REQUEST).content


@pytest.mark.parametrize("parser_name,render", FAMILIES, ids=FAMILY_IDS)
def test_valid_arguments_are_kept_exactly(parser_name, render):
    args = '{"city": "São \\"Paulo\\"", "unit": "c", "n": [1, -2.5e3, true, null, {"x": {}}]}'
    whole = assert_usable(ToolParserManager.get_tool_parser(parser_name), render(args))
    assert [(name, json.loads(a)) for name, a in whole.calls] == [
        ("get_weather", json.loads(args)), ("get_time", {})]


@pytest.mark.parametrize("parser_name,render", FAMILIES, ids=FAMILY_IDS)
def test_truncated_arguments_are_a_closable_prefix(parser_name, render):
    """Output that ends inside the arguments: they stay the valid prefix, which quotes and
    brackets complete (the server closes them unless finish_reason is "length")."""
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    full = render('{"city": "Paris", "unit": "c", "n": [1, 22, {"deep": "text"}]}')
    start = full.index('{"city"')
    for cut in range(start + 1, full.index("}]}", start) + 3):
        output = full[:cut]
        whole = parse_whole(parser_cls, output, REQUEST)
        assert [name for name, _ in whole.calls] == ["get_weather"], output
        args = whole.calls[0][1]
        closer = json_closer(args)
        assert closer is not None, (output, args)
        assert full[start:].startswith(args), (output, args)
        assert isinstance(json.loads(args + closer), dict)
        for deltas in chunkings(output, all_splits=False, random_runs=2):
            assert stream_checked(parser_cls, deltas)[0] == args


@pytest.mark.parametrize("parser_name,output", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": nonsense}\n</tool_call>'),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": "not json"}\n</tool_call>'),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": [1, 2]}\n</tool_call>'),
    ("hermes", '<tool_call>\n{"name": "get_weather", "x": tru, "arguments": {}}\n</tool_call>'),
    ("hermes", '<tool_call>{"arguments": {"city": NaN}, "name": "get_weather"}</tool_call>'),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]["Paris"]'),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": 12}'),
])
def test_invalid_before_the_call_commits_stays_content(parser_name, output):
    """Arguments that do not begin as a JSON object (or a JSON string holding one) make no
    call: the text stays content, whole and streamed alike."""
    whole = assert_usable(ToolParserManager.get_tool_parser(parser_name), output)
    assert whole.calls == [] and whole.content == output


def test_arguments_as_a_json_string():
    parser_cls = ToolParserManager.get_tool_parser("hermes")
    for given, expected in [('"{\\"city\\": \\"Rome\\"}"', {"city": "Rome"}), ('""', {}),
                            ("null", {})]:
        output = '<tool_call>{"name": "get_weather", "arguments": ' + given + "}</tool_call>"
        whole = assert_usable(parser_cls, output)
        assert [(n, json.loads(a)) for n, a in whole.calls] == [("get_weather", expected)]


def test_junk_after_valid_arguments_is_discarded():
    parser_cls = ToolParserManager.get_tool_parser("hermes")
    output = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"} oops, "x": }'
              "</tool_call>after")
    whole = assert_usable(parser_cls, output)
    assert whole.calls == [("get_weather", '{"city": "Oslo"}')] and whole.content == "after"


def test_unterminated_string_stops_at_the_next_marker():
    parser_cls = ToolParserManager.get_tool_parser("hermes")
    output = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Os\nlo}}</tool_call>'
              '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    whole = assert_usable(parser_cls, output)
    assert [(n, json.loads(a)) for n, a in whole.calls] == [("get_weather", {"city": "Os"}),
                                                            ("get_time", {})]
    assert whole.content is None


# ----- Llama 3: calls amid text -----

LLAMA3_IN_TEXT = [
    ("text_around", 'Here is the result: {"name": "get_weather", "parameters": {"city": "Paris"}};'
     ' {"name": "get_time", "parameters": {}} Would you like more?',
     [("get_weather", {"city": "Paris"}), ("get_time", {})],
     "Here is the result:  Would you like more?"),
    ("bare_then_bare", '{"name": "get_weather", "parameters": {"city": "Paris"}}\n'
     '{"name": "get_time", "parameters": {"tz": "UTC"}}',
     [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "UTC"})], None),
    ("type_first", 'Sure. {"type": "function", "name": "get_time", "parameters": {}}',
     [("get_time", {})], "Sure."),
    ("ordinary_json", 'The data is {"name": "Alice", "age": 30} and {"a": {"b": [1]}}.', [],
     'The data is {"name": "Alice", "age": 30} and {"a": {"b": [1]}}.'),
    ("unknown_tool_in_text", 'Try {"name": "launch", "parameters": {}} now.', [],
     'Try {"name": "launch", "parameters": {}} now.'),
    ("code_braces", "function f() { return {x: 1}; } // {not json", [],
     "function f() { return {x: 1}; } // {not json"),
    ("tag_after_text", 'Checking. <|python_tag|>{"name": "get_time", "parameters": {}}',
     [("get_time", {})], "Checking."),
    ("call_then_question", '{"name": "get_weather", "parameters": {"city": "Oslo"}}\n\n'
     "Anything else?", [("get_weather", {"city": "Oslo"})], "\n\nAnything else?"),
]


@pytest.mark.parametrize("case_id,output,calls,content", LLAMA3_IN_TEXT,
                         ids=[c[0] for c in LLAMA3_IN_TEXT])
def test_llama3_calls_amid_text(case_id, output, calls, content):
    whole = assert_usable(ToolParserManager.get_tool_parser("llama3_json"), output)
    assert [(n, json.loads(a)) for n, a in whole.calls] == calls
    assert whole.content == content


def test_llama3_text_is_never_dropped():
    """Every character outside the calls comes back as content, in order."""
    parser_cls = ToolParserManager.get_tool_parser("llama3_json")
    call = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    pieces = ["Intro {braces} ", call, " middle [1, 2] ", call, " end {\"k\": 1}"]
    whole = assert_usable(parser_cls, "".join(pieces))
    assert len(whole.calls) == 2
    assert whole.content == "Intro {braces}  middle [1, 2]  end {\"k\": 1}"


# ----- markup never leaks -----

LEAKS = [
    ("hermes", "<tool_call><tool_call>\n" '{"name": "get_time", "arguments": {}}\n</tool_call> ok',
     [("get_time", {})], " ok"),
    ("hermes", '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n</tool_call>'
     "</tool_call> ok", [("get_time", {})], " ok"),
    ("hermes", '<tool_call>{"name": "get_time", "arguments": {}}}}</tool_call> ok',
     [("get_time", {})], " ok"),
    ("hermes", '{"name": "get_time", "arguments": {}}\n</tool_call>\nok', [("get_time", {})],
     "\nok"),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": ""Paris"}[TOOL_CALLS]get_time[ARGS]{}',
     [("get_weather", {"city": ""}), ("get_time", {})], None),
    ("llama3_json", '<|python_tag|><|python_tag|>{"name": "get_time", "parameters": {}}',
     [("get_time", {})], None),
    ("mistral", '[TOOL_CALLS][TOOL_CALLS][{"name": "get_time", "arguments": {}}]',
     [("get_time", {})], None),
    ("mistral", '[TOOL_CALLS] [TOOL_CALLS]get_time[ARGS]{}', [("get_time", {})], None),
    ("mistral", '[TOOL_CALLS][42, {"name": "get_time", "arguments": {}}, "note", '
     '{"name": "get_weather", "arguments": {"city": "Rome"}}, {"not": "a call"}] Done',
     [("get_time", {}), ("get_weather", {"city": "Rome"})], " Done"),
    ("mistral", '[TOOL_CALLS][42, "x"] Done', [], '[TOOL_CALLS][42, "x"] Done'),
    ("kimi_k2", "<|tool_calls_section_begin|><|tool_calls_section_begin|><|tool_call_begin|>"
     "functions.get_time:0<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_call_end|>"
     "<|tool_calls_section_end|><|tool_calls_section_end|>ok", [("get_time", {})], "ok"),
    ("deepseek_v31", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜><｜tool▁call▁begin｜>get_time"
     "<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁call▁end｜><｜tool▁calls▁end｜>ok",
     [("get_time", {})], "ok"),
    ("openai", "<|channel|>commentary to=functions.get_time<|message|>hello<|call|>", [],
     "hello"),
    # Other encodings: the rest of a call that breaks after it committed is dropped up to the
    # call's own end; with no end before the output does, it stays content.
    ("pythonic", "[get_weather(city='Paris', 3), get_time()]",
     [("get_weather", {"city": "Paris"}), ("get_time", {})], None),
    ("pythonic", "[get_weather(city='Paris', 3", [("get_weather", {"city": "Paris"})], "3"),
    ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>"
     "\njunk\n</function>\n</tool_call> ok", [("get_weather", {"city": "Paris"})], " ok"),
    ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>"
     "\njunk</tool_call>\nok", [("get_weather", {"city": "Paris"})], "\nok"),
    ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>"
     "\nHello there", [("get_weather", {"city": "Paris"})], "Hello there"),
]


@pytest.mark.parametrize("parser_name,output,calls,content", LEAKS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LEAKS)])
def test_markup_never_leaks(parser_name, output, calls, content):
    whole = assert_usable(ToolParserManager.get_tool_parser(parser_name), output)
    assert [(n, json.loads(a)) for n, a in whole.calls] == calls
    assert whole.content == content


def test_call_indexes_count_from_zero_in_streams():
    parser_cls = ToolParserManager.get_tool_parser("hermes")
    one = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    broken = '<tool_call>{"name": "get_time", "arguments": {"a": tru}}</tool_call>'
    output = "\n".join([one, broken, "text", one])
    parser = parser_cls(None)
    seen = []
    previous = ""
    for ch in output:
        message = parser.extract_tool_calls_streaming(previous, previous + ch, ch, [], [], [],
                                                      REQUEST)
        previous += ch
        seen += [tc.index for tc in (message.tool_calls if message else []) if tc.id]
    assert seen == [0, 1, 2]


# ----- fuzz -----

FRAGMENTS = [
    "<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "<|python_tag|>",
    "<|tool_calls_section_begin|>", "<|tool_call_begin|>", "functions.get_time:0",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>", "<|tool_calls_section_end|>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>",
    "<|channel|>commentary to=functions.get_time<|message|>", "<|call|>", "<|start|>assistant",
    '{"name": "get_weather", "arguments": ', '{"name": "get_time", "parameters": ',
    "get_time", "get_weather", '{"city": ', '"Paris"', '"x\\"y', "\\u00e9", "\\q", "{", "}", "[",
    "]", ",", ":", ";", '"', " ", "\n", "1", "-2.5e3", "01", "1.", "true", "tru", "null", "NaN",
    "b: ", "é", "text ",
]
fuzz_texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@pytest.mark.parametrize("parser_name", ["hermes", "mistral", "llama3_json", "kimi_k2",
                                         "deepseek_v31", "openai"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=fuzz_texts, cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_fuzz_arguments_always_usable(parser_name, text, cuts):
    """Random markup and broken JSON: the stream's arguments equal the whole response's text
    for text, every streamed prefix is valid, and only the last call (output ended inside it)
    may need closing."""
    parser_cls = ToolParserManager.get_tool_parser(parser_name)
    whole = parse_whole(parser_cls, text, REQUEST)
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    deltas = [text[a:b] for a, b in zip(points, points[1:]) if b > a]
    streamed = stream_checked(parser_cls, deltas)
    assert [streamed[i] for i in sorted(streamed)] == [args for _, args in whole.calls]
    for i, (_, args) in enumerate(whole.calls):
        closer = json_closer(args)
        assert closer is not None, args
        assert isinstance(json.loads(args + closer), dict)
        assert closer == "" or i == len(whole.calls) - 1, args
