"""The streaming-parity helper for reasoning parsers: replay a model output through a parser at
many chunkings, the way the server feeds it, and check that the reassembled stream equals the
non-streaming `extract_reasoning` result, with no empty fragments on the way."""

import re
from collections.abc import Callable, Iterable

from callm.entrypoints.openai.protocol import DeltaMessage
from callm.reasoning import ReasoningParser
from chunkings import chunkings, marker_chunkings

Split = tuple[str | None, str | None]  # (reasoning, content)


_SPECIAL_TOKEN = re.compile(r"<\|[^<>|]*\|>|<\|[^<>|]*>|<[^<>|]*\|>")


def format_markers(parser_cls: type[ReasoningParser], split: bool = True) -> list[str]:
    """Every literal marker of a parser class's `format` (longest first). With `split`, a marker
    made of several special tokens (`<|open|>think<|sep|>`) also comes as its parts, as a
    tokenizer would produce them."""
    fmt = getattr(parser_cls, "format", None)
    if fmt is None:
        return []
    markers = {fmt.start, fmt.end, *fmt.start_variants, *fmt.end_variants, *fmt.answer_markers}
    if split:
        markers |= {part for m in markers for part in _special_token_parts(m)}
    return sorted((m for m in markers if m.strip()), key=lambda m: (-len(m), m))


def _special_token_parts(marker: str) -> list[str]:
    tokens = _SPECIAL_TOKEN.findall(marker)
    if not tokens or tokens == [marker]:
        return [marker]
    return tokens + [t for t in _SPECIAL_TOKEN.split(marker) if t.strip()]


def parse_whole(make_parser: Callable[[], ReasoningParser], output: str) -> Split:
    reasoning, content = make_parser().extract_reasoning(output, None)
    assert reasoning != "" and content != "", "empty strings must be None"
    return reasoning, content


def parse_stream(make_parser: Callable[[], ReasoningParser], deltas: list[str]) -> Split:
    """Feed `deltas` the way the server does (one fresh parser per stream), then check and
    reassemble the delta messages."""
    parser = make_parser()
    messages: list[DeltaMessage | None] = []
    previous = ""
    for delta in deltas:
        current = previous + delta
        messages.append(parser.extract_reasoning_streaming(previous, current, delta, [], [], []))
        previous = current
    messages.append(parser.finish_streaming())
    return reassemble(messages)


def reassemble(messages: list[DeltaMessage | None]) -> Split:
    reasoning = content = ""
    for message in messages:
        if message is None:
            continue
        assert isinstance(message, DeltaMessage), message
        assert message.reasoning_content != "", "empty reasoning delta"
        assert message.content != "", "empty content delta"
        assert message.reasoning_content is not None or message.content is not None, (
            "a delta with nothing in it: return None instead")
        assert not message.tool_calls, message
        reasoning += message.reasoning_content or ""
        content += message.content or ""
    return reasoning or None, content or None


def parser_factory(parser_cls: type[ReasoningParser], **kwargs) -> Callable[[], ReasoningParser]:
    return lambda: parser_cls(None, **kwargs)


def assert_reasoning_parity(parser_cls: type[ReasoningParser], output: str, *,
                            all_splits: bool = True, markers: Iterable[str] | None = None,
                            **parser_kwargs) -> Split:
    """Every chunking reassembles to the non-streaming result; returns that result.
    `parser_kwargs` go to the constructor (`prompt`, `chat_template_kwargs`, `interrupts`);
    `markers` (default: the format's markers and the interrupts) add the chunkings that cut at
    each marker's boundaries, whole and as its special tokens (`<|open|>`, `think`, `<|sep|>`)."""
    make = parser_factory(parser_cls, **parser_kwargs)
    whole = parse_whole(make, output)
    if markers is None:
        markers = [*format_markers(parser_cls), *format_markers(parser_cls, split=False),
                   *parser_kwargs.get("interrupts", ())]
    markers = list(markers)
    token_parts = {p for m in markers for p in _special_token_parts(m)}
    for deltas in [*chunkings(output, all_splits=all_splits), *marker_chunkings(output, markers),
                   *marker_chunkings(output, token_parts)]:
        streamed = parse_stream(make, deltas)
        assert streamed == whole, (
            f"chunking {deltas!r}:\nstreamed {streamed}\nwhole    {whole}")
    return whole

