"""`callm.reasoning.budget` on SmolLM2's real tokenizer, where `<think>` and `</think>` are
several tokens each: `ThinkingBudget` forces the end marker token by token once a thought has
run its budget, and never after the thought ended; `after_thought` compiles (xgrammar) to a
thought, then the request's own constraint."""

import json

import pytest
import torch

from callm.engine.sampling_params import StructuredOutputsParams
from callm.engine.structured_output import StructuredOutputManager
from callm.model_files import load_tokenizer
from callm.reasoning.budget import ThinkingBudget, after_thought
from callm.reasoning.formats import ReasoningFormat

FMT = ReasoningFormat()  # Qwen3's <think>...</think>
EOS = (0, 2)  # SmolLM2: <|endoftext|>, <|im_end|>


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def forced(budget: ThinkingBudget, ids: list[int], vocab: int) -> int | None:
    """The token `budget` forces after `ids`, or None when the logits pass unchanged."""
    logits = torch.randn(vocab)
    out = budget(ids, logits.clone())
    if torch.equal(out, logits):
        return None
    assert torch.isfinite(out).sum() == 1, "forcing leaves exactly one token"
    return int(out.argmax())


def test_markers_span_several_tokens(tokenizer):
    """The premise of the token-by-token cases below."""
    assert len(encode(tokenizer, "</think>")) == 3 and len(encode(tokenizer, "<think>")) == 3


def test_budget_forces_the_end_marker_token_by_token(tokenizer):
    vocab = len(tokenizer)
    end = encode(tokenizer, "</think>")
    budget = ThinkingBudget(tokenizer, FMT, 4, opened=True)
    thought = encode(tokenizer, " one two three four five six")[:4]
    for n in range(4):  # under budget: untouched
        assert forced(budget, thought[:n], vocab) is None
    ids = list(thought)
    for expected in end:  # the budget is spent: the marker, one token at a time
        assert forced(budget, ids, vocab) == expected
        ids.append(expected)
    # the thought ended: free again, however long the answer runs
    for word in encode(tokenizer, " the answer is long enough to pass any budget"):
        assert forced(budget, ids, vocab) is None
        ids.append(word)


def test_budget_continues_a_marker_the_model_began(tokenizer):
    """The model wrote the marker's first token itself as the budget ran out: the rest follows."""
    vocab = len(tokenizer)
    end = encode(tokenizer, "</think>")
    budget = ThinkingBudget(tokenizer, FMT, 3, opened=True)
    ids = encode(tokenizer, " a b c")[:3] + end[:1]
    assert forced(budget, ids, vocab) == end[1]
    assert forced(budget, ids + end[1:2], vocab) == end[2]


def test_budget_zero_with_the_thought_opened_forces_at_once(tokenizer):
    budget = ThinkingBudget(tokenizer, FMT, 0, opened=True)
    assert forced(budget, [], len(tokenizer)) == encode(tokenizer, "</think>")[0]


def test_budget_counts_from_the_start_marker_the_model_writes(tokenizer):
    """Not opened in the prompt: nothing is forced until the model opens a thought, and the
    budget counts from there."""
    vocab = len(tokenizer)
    budget = ThinkingBudget(tokenizer, FMT, 2, opened=False)
    answer = encode(tokenizer, " no thought here, only a long enough answer")
    for n in range(len(answer) + 1):
        assert forced(budget, answer[:n], vocab) is None
    ids = encode(tokenizer, "<think>") + encode(tokenizer, " x y")[:2]
    assert forced(budget, ids[:-1], vocab) is None
    assert forced(budget, ids, vocab) == encode(tokenizer, "</think>")[0]


def test_budget_sees_an_end_marker_in_other_tokens(tokenizer):
    """The model ended its thought with ' </' 'think' '>' (not the marker's own tokens, which
    start with '</'): the thought is over, so nothing more is forced."""
    vocab = len(tokenizer)
    ids = encode(tokenizer, " a b c </think>\n\nanswer")
    assert encode(tokenizer, "</think>")[0] not in ids  # really other tokens
    budget = ThinkingBudget(tokenizer, FMT, 2, opened=True)
    assert forced(budget, ids, vocab) is None


def test_budget_stops_at_a_call_written_while_thinking(tokenizer):
    """A tool-call marker (the tool parser's, passed as `interrupts`) ends an unclosed thought,
    as the reasoning parser reads it: no `</think>` is forced into the call."""
    vocab = len(tokenizer)
    ids = encode(tokenizer, ' a b c <tool_call>\n{"name": "f"')
    assert forced(ThinkingBudget(tokenizer, FMT, 2, opened=True), ids, vocab) is not None
    budget = ThinkingBudget(tokenizer, FMT, 2, opened=True, interrupts=["<tool_call>"])
    assert forced(budget, ids, vocab) is None


def test_negative_budget_is_refused(tokenizer):
    with pytest.raises(ValueError, match="at least 0"):
        ThinkingBudget(tokenizer, FMT, -1, opened=True)


# --------------------------------------------------------------------------- after_thought

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
          "additionalProperties": False}


@pytest.fixture(scope="module")
def manager(tokenizer):
    return StructuredOutputManager(tokenizer, len(tokenizer), EOS)


def accepts(manager, tokenizer, constraint, text: str) -> bool:
    """The constraint's matcher takes every token of `text`, and the output may end there."""
    matcher = manager.new_matcher(manager.compile(constraint))
    if not all(matcher.accept_token(t) for t in encode(tokenizer, text)):
        return False
    logits = torch.zeros(1, manager.vocab.vocab_size)
    ended = manager.apply_bitmask(logits, [matcher]) == [0]
    return ended or bool(torch.isfinite(logits[0, list(EOS)]).any())


def wrapped(opened: bool, interrupts=(), **constraint) -> StructuredOutputsParams:
    out = after_thought(StructuredOutputsParams(backend="xgrammar", **constraint), FMT, opened,
                        interrupts)
    assert out.structural_tag is not None and out.json is None and out.kind == "structural_tag"
    return out


def test_after_thought_opened_needs_the_end_first(manager, tokenizer):
    c = wrapped(True, json=json.dumps(SCHEMA))
    assert accepts(manager, tokenizer, c, 'thought...</think>\n\n{"a": 1}')
    assert accepts(manager, tokenizer, c, 'a thought {"a": with braces}</think>{"a": 1}')
    assert not accepts(manager, tokenizer, c, '{"a": 1}')  # still inside the thought
    assert not accepts(manager, tokenizer, c, 'thought</think>\n\n{"a": "x"}')  # schema holds
    assert not accepts(manager, tokenizer, c, 'thought</think>\n\nplain text')


def test_after_thought_not_opened_makes_the_thought_optional(manager, tokenizer):
    c = wrapped(False, json=json.dumps(SCHEMA))
    assert accepts(manager, tokenizer, c, '{"a": 1}')
    assert accepts(manager, tokenizer, c, '<think>\nhmm\n</think>\n\n{"a": 2}')
    assert not accepts(manager, tokenizer, c, 'hmm</think>{"a": 2}')  # no opening marker
    assert not accepts(manager, tokenizer, c, '<think>hmm</think>{"b": 2}')


def test_after_thought_wraps_every_kind(manager, tokenizer):
    regex = wrapped(True, regex=r"[0-9]{3}")
    assert accepts(manager, tokenizer, regex, "x</think>123")
    assert not accepts(manager, tokenizer, regex, "x</think>12a")
    choice = wrapped(True, choice=["yes", "no"])
    assert accepts(manager, tokenizer, choice, "x</think>\nno")
    assert not accepts(manager, tokenizer, choice, "x</think>\nmaybe")
    obj = wrapped(True, json_object=True)
    assert accepts(manager, tokenizer, obj, 'x</think>{"k": [1]}')


def test_after_thought_keeps_calls_out_of_the_thought(manager, tokenizer):
    """The tool parser's call marker ends an unclosed thought for the reasoning parser, so a
    call there would escape the grammar: under a constraint the thought cannot hold one."""
    call = {"type": "tag", "begin": "<tool_call>\n", "content": {
        "type": "json_schema", "json_schema": SCHEMA}, "end": "\n</tool_call>"}
    tag = {"type": "structural_tag", "format": call}
    free = wrapped(True, structural_tag=tag)
    strict = wrapped(True, interrupts=["<tool_call>"], structural_tag=tag)
    inside = 'hmm <tool_call>\n{"a": "x"}\n</tool_call></think><tool_call>\n{"a": 1}\n</tool_call>'
    assert accepts(manager, tokenizer, free, inside)
    assert not accepts(manager, tokenizer, strict, inside)
    after = 'hmm, tool_call it is</think>\n<tool_call>\n{"a": 1}\n</tool_call>'
    assert accepts(manager, tokenizer, strict, after)
