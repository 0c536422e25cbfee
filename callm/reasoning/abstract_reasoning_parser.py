"""The reasoning-parser interface and its registry.

Signatures follow vLLM's `ReasoningParser`, so a vLLM reasoning plugin ports by changing its
imports. One instance serves one request. `FormatReasoningParser` is defined by a
`ReasoningFormat` alone; the built-in families are such descriptions (see `families.py`).
"""

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from callm.entrypoints.openai.protocol import DeltaMessage
from callm.plugins.registry import ParserRegistry
from callm.reasoning.formats import ReasoningFormat, ThoughtSplitter


class ReasoningParser:
    """Splits one request's output into its thought (`reasoning`) and its answer (`content`)."""

    def __init__(self, tokenizer: Any, *args, **kwargs):
        self.model_tokenizer = tokenizer

    @cached_property
    def vocab(self) -> dict[str, int]:
        return self.model_tokenizer.get_vocab()

    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        raise NotImplementedError

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        raise NotImplementedError

    def extract_reasoning(self, model_output: str, request) -> tuple[str | None, str | None]:
        raise NotImplementedError

    def extract_reasoning_streaming(self, previous_text: str, current_text: str, delta_text: str,
                                    previous_token_ids: Sequence[int],
                                    current_token_ids: Sequence[int],
                                    delta_token_ids: Sequence[int]) -> DeltaMessage | None:
        raise NotImplementedError

    def finish_streaming(self) -> DeltaMessage | None:
        """The stream ended: what was held back (e.g. a possible marker prefix)."""
        return None


class FormatReasoningParser(ReasoningParser):
    """A reasoning parser defined by `format` (see `callm.reasoning.formats`).

    Keyword arguments: `chat_template_kwargs` (thinking switched off means no thought),
    `prompt` (the rendered prompt: a thought it leaves open means the output starts inside it),
    `interrupts` (markers — the tool parser's call openers — that end an unclosed thought).
    """

    format: ClassVar[ReasoningFormat] = ReasoningFormat()

    def __init__(self, tokenizer: Any, *args, chat_template_kwargs: dict | None = None,
                 prompt: str = "", interrupts: Sequence[str] = (), **kwargs):
        super().__init__(tokenizer, *args, **kwargs)
        fmt = self.format
        self.thinking = fmt.thinking(chat_template_kwargs)
        self.opened_in_prompt = fmt.opened_in(prompt)
        self.interrupts = tuple(interrupts)
        self._splitter: ThoughtSplitter | None = None

    def _new_splitter(self) -> ThoughtSplitter:
        return ThoughtSplitter(self.format, opened_in_prompt=self.opened_in_prompt,
                               thinking=self.thinking, interrupts=self.interrupts)

    def extract_reasoning(self, model_output: str, request=None) -> tuple[str | None, str | None]:
        splitter = self._new_splitter()
        pieces = splitter.feed(model_output) + splitter.finish()
        reasoning = "".join(t for k, t in pieces if k == "reasoning")
        content = "".join(t for k, t in pieces if k == "content")
        return reasoning or None, content or None

    def extract_reasoning_streaming(self, previous_text, current_text, delta_text,
                                    previous_token_ids, current_token_ids,
                                    delta_token_ids) -> DeltaMessage | None:
        if self._splitter is None:
            self._splitter = self._new_splitter()
        return _delta(self._splitter.feed(current_text))

    def finish_streaming(self) -> DeltaMessage | None:
        return _delta(self._splitter.finish()) if self._splitter is not None else None

    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        """The thought is over in these ids (prompt and output so far)."""
        reasoning, content = self.extract_reasoning(self._decode(input_ids))
        return not self.thinking or content is not None or self._ended(input_ids)

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        end_id = self.vocab.get(self.format.end)
        if end_id is None or end_id not in input_ids:
            return [] if self.thinking and self.opened_in_prompt else list(input_ids)
        return list(input_ids[len(input_ids) - input_ids[::-1].index(end_id):])

    def _ended(self, input_ids: Sequence[int]) -> bool:
        end_id = self.vocab.get(self.format.end) if self.format.end else None
        return end_id is not None and end_id in input_ids

    def _decode(self, input_ids: Sequence[int]) -> str:
        return self.model_tokenizer.decode(list(input_ids), skip_special_tokens=False)


def _delta(pieces) -> DeltaMessage | None:
    if not pieces:
        return None
    reasoning = "".join(t for k, t in pieces if k == "reasoning")
    content = "".join(t for k, t in pieces if k == "content")
    return DeltaMessage(reasoning_content=reasoning or None, content=content or None)


class ReasoningParserManager(ParserRegistry):
    """Registry of reasoning parsers by name (see `callm.plugins.registry`)."""

    kind = "reasoning parser"
    base = ReasoningParser
    entry_point_group = "callm.reasoning_parsers"
    reasoning_parsers: ClassVar[dict[str, type[ReasoningParser]]] = {}
    lazy_parsers: ClassVar[dict[str, str]] = {}

    @classmethod
    def _classes(cls) -> dict[str, type[ReasoningParser]]:
        return cls.reasoning_parsers

    @classmethod
    def get_reasoning_parser(cls, name: str) -> type[ReasoningParser]:
        return cls.get(name)

    @classmethod
    def import_reasoning_parser(cls, path_or_module: str | Path) -> None:
        cls.import_plugin(path_or_module)
