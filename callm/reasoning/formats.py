"""Declarative descriptions of how reasoning models write their thoughts, and the incremental
splitter they drive.

A `ReasoningFormat` names the markers around a thought, whether the thought may recur (gpt-oss
writes several analysis messages), which wrappers around the answer are markup, and how the
chat template switches thinking off. `ThoughtSplitter` reads an output as it grows and says,
for each piece, whether it is thought or answer — at any chunking the same split, and cost
linear in the output length.

Where the thought starts is the template's choice: many templates open it in the prompt (the
generation prompt ends with `<think>`), so the output starts inside it; others leave the model
to write the opening marker. The splitter is told which (`opened_in_prompt`), so it never
guesses from the output.
"""

from dataclasses import dataclass, field
from typing import Literal

import regex


_OFF = (False, 0, "none", "disabled", "no_think", "off", "false")


@dataclass(frozen=True)
class ReasoningFormat:
    start: str = "<think>"
    end: str = "</think>"
    # Other literal forms of the markers, e.g. Harmony's "<|start|>assistant<|channel|>analysis
    # <|message|>", Granite's "Here's my response:".
    start_variants: tuple[str, ...] = ()
    end_variants: tuple[str, ...] = ()
    # The output starts inside the thought whatever the prompt shows (DeepSeek-R1, Step-3).
    always_opens: bool = False
    repeats: bool = False  # a new thought may open after an answer part (Harmony)
    # Markup around or inside the answer that is never content (Hunyuan's "<answer>").
    answer_markers: tuple[str, ...] = ()
    # `chat_template_kwargs` keys that switch thinking (the first one given counts), and the
    # default when none is given; () = the family always thinks.
    switch: tuple[str, ...] = ("enable_thinking",)
    thinks_by_default: bool = True

    def thinking(self, chat_template_kwargs: dict | None) -> bool:
        """Whether the template asks this request's model to think."""
        kwargs = chat_template_kwargs or {}
        key = next((k for k in self.switch if k in kwargs), None)
        if key is None:
            return self.thinks_by_default or not self.switch
        value = kwargs[key]
        return not (value is None or value in _OFF or str(value).lower() in _OFF)

    def opened_in(self, prompt: str) -> bool:
        """The output starts inside a thought: the family always does, or the prompt ends with
        a thought it opened and did not close."""
        if self.always_opens:
            return True
        tail = prompt.rstrip()
        starts = [tail.rfind(s) for s in (self.start, *self.start_variants) if s]
        ends = [tail.rfind(e) for e in (self.end, *self.end_variants) if e]
        return max(starts, default=-1) > max(ends, default=-1)


Kind = Literal["reasoning", "content"]


@dataclass
class ThoughtSplitter:
    """Splits one output, fed as the text so far, into reasoning and content pieces.

    `interrupts`: markers that end an unclosed thought where they begin and stay in the content
    (a tool call written while thinking is a call, not a thought). Whitespace around a thought
    and between it and its answer is layout, so `<think>\n\n</think>\n\nHi` has no thought;
    a later thought (gpt-oss) joins the earlier ones after a "\n".
    """

    fmt: ReasoningFormat
    opened_in_prompt: bool = False
    thinking: bool = True
    interrupts: tuple[str, ...] = ()
    text: str = ""
    pos: int = 0
    state: Literal["start", "thought", "answer"] = "start"
    eof: bool = False
    _skip_space: bool = False  # whitespace between a thought and its answer is layout
    _lead_space: bool = True  # so is whitespace around a thought: "<think>\n\n</think>" is empty
    _new_thought: bool = True  # a later thought (gpt-oss) is set off from the earlier by "\n"
    _said_reasoning: bool = False
    _out: list[tuple[Kind, str]] = field(default_factory=list)

    def __post_init__(self):
        # An opened thought may still begin with its marker (DeepSeek-R1-0528 writes "<think>").
        self._opened = self.thinking and self.opened_in_prompt
        fmt = self.fmt
        starts = [s for s in (fmt.start, *fmt.start_variants) if s]
        self._starts = sorted(starts, key=len, reverse=True)
        self._ends = {fmt.end, *fmt.end_variants}
        self._thought_enders = [m for m in (*self._ends, *self.interrupts) if m]
        self._thought_end = _alternation(self._thought_enders)
        self._answer_markers = list(fmt.answer_markers) + (starts if fmt.repeats else [])
        self._answer_marker = _alternation(self._answer_markers)

    def feed(self, text_so_far: str) -> list[tuple[Kind, str]]:
        self.text = text_so_far
        return self._advance()

    def finish(self) -> list[tuple[Kind, str]]:
        self.eof = True
        return self._advance()

    # ----- states -----

    def _advance(self) -> list[tuple[Kind, str]]:
        while True:
            before = (self.state, self.pos)
            {"start": self._start, "thought": self._thought, "answer": self._answer}[self.state]()
            if (self.state, self.pos) == before:
                break
        out, self._out = self._out, []
        return out

    def _start(self) -> None:
        """Leading whitespace, then the opening marker (a thought) or anything else (an answer,
        or the thought itself when the prompt opened it)."""
        rest = self.text[self.pos:].lstrip()
        if not rest and not self.eof:
            return
        for marker in self._starts:
            if rest.startswith(marker):
                self.pos = len(self.text) - len(rest) + len(marker)
                self._enter_thought()
                return
            if marker.startswith(rest) and not self.eof:
                return  # the marker may still be arriving
        if self._opened:
            self._enter_thought()
        else:
            self.state = "answer"

    def _enter_thought(self) -> None:
        self.state = "thought"
        self._lead_space = self._new_thought = True

    def _thought(self) -> None:
        if self._lead_space:
            self.pos = len(self.text) - len(self.text[self.pos:].lstrip())
            if self.pos == len(self.text) and not self.eof:
                return
            self._lead_space = False
        end = self._thought_end
        m = end.search(self.text, self.pos) if end else None
        held = self._held(self._thought_enders, m) if m is not None else None
        if held is not None:
            piece = self.text[self.pos:held].rstrip()
            self._emit("reasoning", piece)
            self.pos += len(piece)
            return
        if m is not None:
            self._emit("reasoning", self.text[self.pos:m.start()].rstrip())
            if m.group() in self._ends:
                self.pos = m.end()
                self._skip_space = True
            else:
                self.pos = m.start()  # an interrupting marker belongs to the answer
            self.state = "answer"
            return
        hold = len(self.text)
        if end and not self.eof:
            partial = end.search(self.text, self.pos, partial=True)
            if partial is not None:
                hold = partial.start()
        # Whitespace closing a thought is layout too: held until more of the thought follows.
        piece = self.text[self.pos:hold].rstrip()
        self._emit("reasoning", piece)
        self.pos = len(self.text) if self.eof else self.pos + len(piece)

    def _answer(self) -> None:
        if self._skip_space:
            stripped = len(self.text) - len(self.text[self.pos:].lstrip())
            if stripped == len(self.text) and not self.eof:
                self.pos = stripped
                return
            self.pos = stripped
            self._skip_space = False
        marker = self._answer_marker
        while marker is not None:
            m = marker.search(self.text, self.pos)
            if m is None:
                break
            held = self._held(self._answer_markers, m)
            if held is not None:
                self._emit("content", self.text[self.pos:held])
                self.pos = held
                return
            self._emit("content", self.text[self.pos:m.start()])
            self.pos = m.end()
            if self.fmt.repeats and m.group() in self._starts:
                self._enter_thought()
                return
        hold = len(self.text)
        if marker is not None and not self.eof:
            partial = marker.search(self.text, self.pos, partial=True)
            if partial is not None:
                hold = partial.start()
        self._emit("content", self.text[self.pos:hold])
        self.pos = hold

    def _held(self, markers: list[str], m) -> int | None:
        """`m` matched, but a marker that would win over it in the whole text (a longer one at
        the same place, as ERNIE's "<response>\n" over "<response>") may still be arriving: where
        it would start, so the caller waits there."""
        if self.eof:
            return None
        n = len(self.text)
        longest = max(map(len, markers))
        for at in range(max(self.pos, n - longest + 1), m.start() + 1):
            tail = self.text[at:]
            if any(len(x) > len(tail) and x.startswith(tail) for x in markers):
                return at
        return None

    def _emit(self, kind: Kind, text: str) -> None:
        if not text:
            return
        if kind == "reasoning":
            if self._new_thought and self._said_reasoning:
                text = "\n" + text
            self._new_thought, self._said_reasoning = False, True
        if self._out and self._out[-1][0] == kind:
            self._out[-1] = (kind, self._out[-1][1] + text)
        else:
            self._out.append((kind, text))


def _alternation(markers: list[str]) -> regex.Pattern | None:
    if not markers:
        return None
    ordered = sorted(set(markers), key=len, reverse=True)
    return regex.compile("|".join(regex.escape(m) for m in ordered))
