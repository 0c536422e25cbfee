"""Every built-in reasoning family against its fixtures: the whole output splits into the
expected thought and answer, and every chunking of the stream reassembles to the same."""

import pytest

from callm.reasoning import (_BUILTIN_PARSERS, FormatReasoningParser, ReasoningFormat,
                             ReasoningParserManager)
from callm.reasoning.formats import ThoughtSplitter

from .fixtures import FIXTURES, FIXTURES_BY_NAME, Case
from .reasoning_parity import assert_reasoning_parity, parse_stream, parse_whole, parser_factory

CLASSES = {cls.__name__: cls for cls in map(ReasoningParserManager.get_reasoning_parser,
                                            _BUILTIN_PARSERS)}


def _cases():
    for class_name, cases in FIXTURES.items():
        for c in cases:
            yield pytest.param(class_name, c, id=f"{class_name.removesuffix('ReasoningParser')}-"
                                                  f"{c.id}")


@pytest.mark.parametrize("class_name, case", list(_cases()))
def test_fixture(class_name: str, case: Case):
    got = assert_reasoning_parity(CLASSES[class_name], case.output, **case.kwargs)
    assert got == (case.reasoning, case.content)


def test_every_builtin_name_has_fixtures():
    """One fixture list per parser class; every built-in name, aliases included, maps to one."""
    builtin = {name for name in ReasoningParserManager.list_registered()
               if ReasoningParserManager.get_reasoning_parser(name).__module__
               .startswith("callm.reasoning.")}
    assert builtin == set(_BUILTIN_PARSERS) == set(FIXTURES_BY_NAME)
    assert set(FIXTURES) == set(CLASSES)
    for class_name, cases in FIXTURES.items():
        ids = [c.id for c in cases]
        assert len(ids) == len(set(ids)), class_name


# What each family's fixtures must show, where it applies.
_CORE = {"thought_answer", "opened_in_prompt", "empty_thought", "empty_thought_layout",
         "cut_off", "cut_off_mid_marker", "unicode"}


@pytest.mark.parametrize("class_name", sorted(set(CLASSES) - {
    "MiniMaxM2AppendThinkReasoningParser"}))
def test_fixtures_cover_the_common_cases(class_name):
    fmt: ReasoningFormat = CLASSES[class_name].format
    ids = {c.id for c in FIXTURES[class_name]}
    assert _CORE <= ids, _CORE - ids
    assert ({"no_thought_is_all_thought"} if fmt.always_opens else {"no_thought"}) <= ids
    if fmt.switch:
        assert {"switched_off", "not_switched_on"} & ids, "the thinking switch is untested"
    if not fmt.always_opens and not fmt.repeats and class_name != "ApertusReasoningParser":
        assert "interrupt" in ids or fmt.repeats


@pytest.mark.parametrize("class_name", sorted(CLASSES))
def test_empty_deltas_change_nothing(class_name):
    """The engine may send an empty delta (a token that decodes to nothing yet): no parser
    state moves, and nothing is sent twice."""
    cls = CLASSES[class_name]
    for case in FIXTURES[class_name]:
        make = parser_factory(cls, **case.kwargs)
        deltas = [""] + [d for ch in case.output for d in (ch, "")]
        assert parse_stream(make, deltas) == parse_whole(make, case.output), case.id


def test_minimax_append_think_sends_think_once():
    """Regression: a first empty delta made the "<think>" prefix go out twice."""
    cls = ReasoningParserManager.get_reasoning_parser("minimax_m2_append_think")
    make = parser_factory(cls)
    assert parse_stream(make, ["", "", "abc</think>", "x"]) == (None, "<think>abc</think>x")
    assert parse_stream(make, []) == (None, "<think>")


def test_parsers_serve_one_request_each_and_whole_parse_is_stateless():
    cls = ReasoningParserManager.get_reasoning_parser("qwen3")
    parser = cls(None)
    assert parser.extract_reasoning("<think>a</think>b", None) == ("a", "b")
    assert parser.extract_reasoning("c", None) == (None, "c")
    assert parser.finish_streaming() is None  # nothing streamed yet


# ----- the splitter on its own -----

class _PrefixMarkers(FormatReasoningParser):
    """Markers of which one is a prefix of another, or starts inside another's text."""

    format = ReasoningFormat(start="<t>", end="</t>", end_variants=("</t>!!",),
                             answer_markers=("<r>", "<r>\n", "x<r>y"))


@pytest.mark.parametrize("output, expected", [
    ("<t>a</t>!!b", ("a", "b")),
    ("<t>a</t>!b", ("a", "!b")),
    ("<t>a</t><r>\nb", ("a", "b")),
    ("<t>a</t><r>b", ("a", "b")),
    ("<t>a</t>wx<r>yz", ("a", "wz")),
    ("<t>a</t>wx<r>z", ("a", "wxz")),
    ("<t>a</t>wx<r>", ("a", "wx")),
    ("<t>a</t>wx<r", ("a", "wx<r")),
])
def test_a_longer_marker_still_arriving_wins(output, expected):
    """Regression: the stream took "<r>" (or "</t>") as soon as it was whole, while the whole
    output had "<r>\\n" (or "x<r>y") there."""
    assert assert_reasoning_parity(_PrefixMarkers, output) == expected


@pytest.mark.parametrize("kwargs, thinking", [
    ({}, True),
    ({"enable_thinking": False}, False),
    ({"enable_thinking": None}, False),
    ({"enable_thinking": "False"}, False),
    ({"enable_thinking": 0}, False),
    ({"enable_thinking": True}, True),
    ({"other": False}, True),
])
def test_switch_values(kwargs, thinking):
    assert ReasoningFormat().thinking(kwargs) is thinking


def test_switch_first_key_given_counts_and_defaults():
    fmt = ReasoningFormat(switch=("thinking", "enable_thinking"), thinks_by_default=False)
    assert not fmt.thinking(None)
    assert fmt.thinking({"enable_thinking": True})
    assert not fmt.thinking({"thinking": False, "enable_thinking": True})
    for value in ("none", "disabled", "no_think", "off", "NONE"):
        assert not fmt.thinking({"thinking": value}), value
    assert fmt.thinking({"thinking": "enabled"})
    assert ReasoningFormat(switch=()).thinking({"enable_thinking": False})


@pytest.mark.parametrize("prompt, opened", [
    ("", False),
    ("<|im_start|>assistant\n<think>\n", True),
    ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
    ("<think>old</think>answer<|im_start|>assistant\n", False),
    ("<think>old</think>answer<|im_start|>assistant\n<think>", True),
    ("user wrote <think> here<|im_start|>assistant\n", True),  # the last marker decides
])
def test_opened_in_prompt(prompt, opened):
    assert ReasoningFormat().opened_in(prompt) is opened


def test_splitter_is_incremental():
    """Feeding a long thought one character at a time costs about as much per character at the
    end as at the start (the splitter never rescans what it has passed)."""
    import time

    fmt = CLASSES["GptOssReasoningParser"].format
    text = "<|channel|>analysis<|message|>" + "thinking <|e " * 4000

    def feed(n):
        splitter = ThoughtSplitter(fmt)
        start = time.perf_counter()
        for i in range(1, n):
            splitter.feed(text[:i])
        return time.perf_counter() - start

    small, large = feed(len(text) // 8), feed(len(text))
    assert large < 8 * small * 3, (small, large)
