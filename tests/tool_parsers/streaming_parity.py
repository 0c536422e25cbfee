"""The shared streaming-parity helper: replay a model output through a parser at many chunkings
and check that the reassembled stream equals the non-streaming result, in OpenAI's delta shape."""

import json
import random
from dataclasses import dataclass, field

from callm.entrypoints.openai.protocol import DeltaMessage


@dataclass
class Parsed:
    content: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments text)

    def normalized(self):
        """Names and JSON-equal arguments (raw text when it is not JSON), content."""
        return self.content, [(name, _json_or_text(args)) for name, args in self.calls]


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def chunkings(text: str, seed: int = 0, random_runs: int = 5, all_splits: bool = True):
    """1 char at a time, every split into 2, seeded random sizes, and whole."""
    yield [text[i:i + 1] for i in range(len(text))]
    if all_splits:
        for i in range(1, len(text)):
            yield [text[:i], text[i:]]
    rng = random.Random(seed)
    for _ in range(random_runs):
        chunks, i = [], 0
        while i < len(text):
            n = rng.randint(1, 12)
            chunks.append(text[i:i + n])
            i += n
        yield chunks
    yield [text]


def parse_whole(parser_cls, output: str, request) -> Parsed:
    info = parser_cls(None).extract_tool_calls(output, request)
    assert info.tools_called == bool(info.tool_calls)
    calls = [(c.function.name, c.function.arguments) for c in info.tool_calls]
    for call in info.tool_calls:
        assert call.type == "function" and call.id
    return Parsed(info.content, calls)


def parse_stream(parser_cls, deltas: list[str], request, tokenizer=None) -> Parsed:
    """Feed `deltas` the way the server does, then check and reassemble the delta messages."""
    parser = parser_cls(tokenizer)
    messages: list[DeltaMessage | None] = []
    previous = ""
    for delta in deltas:
        current = previous + delta
        messages.append(parser.extract_tool_calls_streaming(previous, current, delta, [], [], [],
                                                            request))
        previous = current
    messages.append(parser.finish_streaming(request))
    return reassemble(messages)


def reassemble(messages: list[DeltaMessage | None]) -> Parsed:
    """Join content and tool-call deltas, checking OpenAI's rules on the way: a call's first delta
    has index, id, type and name; later ones only index and arguments; indexes 0, 1, 2… in
    order."""
    content = ""
    calls: list[list[str]] = []
    for message in messages:
        if message is None:
            continue
        assert message.content is None or message.content != "", "empty content delta"
        content += message.content or ""
        for delta in message.tool_calls:
            if delta.index == len(calls):  # a new call
                assert delta.id and delta.type == "function", delta
                assert delta.function is not None and delta.function.name, delta
                calls.append([delta.function.name, delta.function.arguments or ""])
            else:
                assert delta.index == len(calls) - 1, f"delta for call {delta.index} out of order"
                assert delta.id is None and delta.function.name is None, delta
                calls[delta.index][1] += delta.function.arguments or ""
    return Parsed(content or None, [(name, args) for name, args in calls])


def assert_streaming_parity(parser_cls, output: str, request, all_splits: bool = True) -> Parsed:
    """Every chunking reassembles to the non-streaming result; returns that result."""
    whole = parse_whole(parser_cls, output, request)
    for deltas in chunkings(output, all_splits=all_splits):
        streamed = parse_stream(parser_cls, deltas, request)
        assert streamed.normalized() == whole.normalized(), (
            f"chunking {deltas!r}:\nstreamed {streamed}\nwhole    {whole}")
    return whole
