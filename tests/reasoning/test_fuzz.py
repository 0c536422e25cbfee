"""Hypothesis fuzz: no reasoning parser raises on arbitrary text at arbitrary chunkings, and the
stream still equals the whole result. One run per parser class (aliases share a class); the
random text is built from every family's markers, whole, cut into their special tokens and cut
in half, so each parser also meets the others' markup; the parser is built with a prompt that
does or doesn't open its thought, any thinking switch, and tool-call markers as interrupts."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callm.reasoning import _BUILTIN_PARSERS, ReasoningParserManager

from .reasoning_parity import format_markers, parse_stream, parse_whole, parser_factory

CLASSES = {cls.__name__: cls for cls in map(ReasoningParserManager.get_reasoning_parser,
                                            _BUILTIN_PARSERS)}
MARKERS = {name: format_markers(cls) + format_markers(cls, split=False)
           for name, cls in CLASSES.items()}
TOOL_MARKERS = ["<tool_call>", "<tool_calls>", "<seed:tool_call>", "[TOOL_CALLS]", "<|tool_call>",
                "<|tool_calls_section_begin|>", "<|START_ACTION|>", "<|open|>tools<|sep|>",
                "<minimax:tool_call>", "<｜tool▁calls▁begin｜>", "<|content_invoke_tool_json|>"]
ALL_MARKERS = sorted({m for markers in MARKERS.values() for m in markers} | set(TOOL_MARKERS))
FRAGMENTS = ALL_MARKERS + sorted({m[:len(m) // 2] for m in ALL_MARKERS if len(m) > 3}) + [
    " ", "\n", "\n\n", "\t", "  \n ", "a", "The answer", "<", ">", "|", "/", "<|", "|>", "</",
    "think", "response", "é", "東京", "🌧️", "\u200b", "｜", "▁", "\r\n", "Here's", "Here is my",
]
SWITCH_VALUES = [None, True, False, "none", "enabled", "disabled", "high", "no_think", 0]


def texts(class_name: str):
    """Random text, weighted towards the class's own markers."""
    own = st.sampled_from(MARKERS[class_name] or FRAGMENTS)
    pieces = st.one_of(own, own, st.sampled_from(FRAGMENTS), st.text(max_size=4))
    return st.lists(pieces, max_size=30).map("".join)


def parser_kwargs(class_name: str):
    fmt = CLASSES[class_name].format
    keys = [*fmt.switch, "enable_thinking", "thinking"]
    prompts = ["", "<|im_start|>assistant\n", fmt.start, f"x{fmt.start}\n",
               f"{fmt.start}a{fmt.end}", *fmt.start_variants]
    return st.fixed_dictionaries({}, optional={
        "prompt": st.sampled_from(prompts),
        "chat_template_kwargs": st.dictionaries(st.sampled_from(keys),
                                                st.sampled_from(SWITCH_VALUES), max_size=2),
        "interrupts": st.lists(st.sampled_from(TOOL_MARKERS), max_size=3),
    })


def _chunk(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:]) if b > a]


@pytest.mark.parametrize("class_name", sorted(CLASSES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=16))
def test_never_raises_and_streams_like_whole(class_name, data, cuts):
    text = data.draw(texts(class_name), label="text")
    kwargs = data.draw(parser_kwargs(class_name), label="kwargs")
    make = parser_factory(CLASSES[class_name], **kwargs)
    whole = parse_whole(make, text)
    assert parse_stream(make, _chunk(text, cuts)) == whole
    assert parse_stream(make, list(text)) == whole


def test_fragments_hold_every_marker():
    """The fuzz text can contain each literal marker of each family's format."""
    for name, cls in CLASSES.items():
        fmt = cls.format
        for marker in (fmt.start, fmt.end, *fmt.start_variants, *fmt.end_variants,
                       *fmt.answer_markers):
            assert not marker.strip() or marker in FRAGMENTS, (name, marker)
