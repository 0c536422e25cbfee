"""What a thought does to generation: constraints start after it, and a budget ends it.

`after_thought` wraps a request's output constraint (a JSON schema, a regex, a tool-call
grammar...) so the model first thinks freely and the constraint holds from the end of its
thought: one structural tag whose first part is the thought. `ThinkingBudget` is a logits
processor that, once a thought has run its budget of tokens, makes the model write the
family's end-of-thought marker (llama.cpp's `--reasoning-budget`, per request here).
"""

from collections.abc import Sequence
from dataclasses import replace

import torch

from callm.reasoning.formats import ReasoningFormat

# Layout a model may write between its thought and the constrained answer.
_GAP = {"type": "regex", "pattern": r"[ \t\r\n]{0,8}"}


def after_thought(constraint, fmt: ReasoningFormat, opened: bool,
                  interrupts: Sequence[str] = ()):
    """`constraint` (StructuredOutputsParams) applied after the thought: a structural tag of
    [thought] + the constrained part. `opened`: the prompt opened the thought, so the output
    starts inside it; otherwise the thought is optional and begins with its marker.
    `interrupts` (the tool parser's call markers) cannot appear in the thought: the reasoning
    parser would read a call there, outside the constraint, so the thought must end first."""
    node = _constrained_node(constraint)
    text = {"type": "any_text"}
    if interrupts := [m for m in interrupts if m]:
        text["excludes"] = interrupts
    thought = {"type": "tag", "begin": "" if opened else fmt.start, "content": text,
               "end": fmt.end}
    if not opened:
        thought = {"type": "optional", "content": thought}
    tag = {"type": "structural_tag", "format": {"type": "sequence",
                                                "elements": [thought, _GAP, node]}}
    return replace(constraint, json=None, json_object=False, regex=None, choice=None,
                   grammar=None, structural_tag=tag)


def _constrained_node(constraint) -> dict:
    """A constraint as one structural-tag node."""
    if constraint.structural_tag is not None:
        tag = constraint.structural_tag
        if isinstance(tag, str):
            import json

            tag = json.loads(tag)
        return tag.get("format", tag) if tag.get("type") == "structural_tag" else tag
    if constraint.json is not None:
        import json

        schema = json.loads(constraint.json) if isinstance(constraint.json, str) else constraint.json
        return {"type": "json_schema", "json_schema": schema}
    if constraint.json_object:
        return {"type": "json_schema", "json_schema": {"type": "object"}}
    if constraint.regex is not None:
        return {"type": "regex", "pattern": constraint.regex}
    if constraint.choice is not None:
        return {"type": "or", "elements": [{"type": "const_string", "value": c}
                                           for c in constraint.choice]}
    if constraint.grammar is not None:
        return {"type": "grammar", "grammar": constraint.grammar}
    raise ValueError("nothing to constrain after the thought")


class ThinkingBudget:
    """Logits processor: after `budget` tokens of thought, force the end marker's tokens.

    The state is read from the output ids each step (a request's samples share one processor):
    where the thought began (at once when the prompt opened it, else after the start marker's
    tokens), whether its end marker came, and how much of a forced end is already written."""

    def __init__(self, tokenizer, fmt: ReasoningFormat, budget: int, opened: bool,
                 interrupts: Sequence[str] = ()):
        if budget < 0:
            raise ValueError("thinking_token_budget must be at least 0")
        self.tokenizer = tokenizer
        self.budget = budget
        self.opened = opened
        self.start_ids = tokenizer.encode(fmt.start, add_special_tokens=False) if fmt.start else []
        self.end_ids = tokenizer.encode(fmt.end, add_special_tokens=False)
        # What ends a thought in the text, as the reasoning parser reads it: the end marker in
        # any tokens (' </' 'think' '>' is not '</' 'think' '>'), its variants, and the tool
        # parser's call markers (a call written while thinking ends the thought).
        self.enders = [m for m in (fmt.end, *fmt.end_variants, *interrupts) if m]
        self._over: set[int] = set()  # samples whose thought is over, by id of their ids list

    def __call__(self, output_ids, logits: torch.Tensor) -> torch.Tensor:
        ids = list(output_ids)
        begin = 0 if self.opened else _after(ids, self.start_ids, 0)
        if begin is None or not self.end_ids or len(ids) - begin < self.budget:
            return logits  # no thought yet, or still within budget
        if id(output_ids) in self._over:
            return logits
        if _after(ids, self.end_ids, begin) is not None or self._ended(ids[begin:]):
            self._over.add(id(output_ids))  # each sample's ids are one list for its lifetime
            return logits
        written = next((k for k in range(min(len(self.end_ids) - 1, len(ids) - begin), 0, -1)
                       if ids[-k:] == self.end_ids[:k]), 0)
        if len(ids) - begin - written < self.budget:
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[self.end_ids[written]] = 0.0
        return forced

    def _ended(self, thought_ids: list[int]) -> bool:
        """The thought's text holds something that ended it (checked only once the budget is
        spent, so the decoding costs nothing before)."""
        text = self.tokenizer.decode(thought_ids, skip_special_tokens=False)
        return any(m in text for m in self.enders)


def _after(ids: list[int], marker: list[int], start: int) -> int | None:
    """The index just past the first occurrence of `marker` in ids[start:], or None."""
    if not marker:
        return None
    first, n = marker[0], len(marker)
    i = start
    while True:
        try:
            i = ids.index(first, i)
        except ValueError:
            return None
        if ids[i:i + n] == marker:
            return i + n
        i += 1
