"""The shared streaming-parity helper: replay a model output through a parser at many chunkings
and check that the reassembled stream equals the non-streaming result, in OpenAI's delta shape."""

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from callm.entrypoints.openai.protocol import DeltaMessage
from chunkings import chunkings, marker_chunkings


@dataclass
class Parsed:
    content: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments text)
    ids: list[str] = field(default_factory=list, compare=False)  # random unless model-written

    def normalized(self):
        """Names and JSON-equal arguments (raw text when it is not JSON), content."""
        return self.content, [(name, _json_or_text(args)) for name, args in self.calls]


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_markers(parser_cls, split: bool = True) -> list[str]:
    """Every literal marker in a parser class's `formats`: region and call markers, markers
    dropped as markup, and the encoding's own tags and quotes (longest first). With `split`, a
    marker made of several special tokens (`<｜tool▁call▁begin｜>function<｜tool▁sep｜>`) is given
    as its parts, as a tokenizer would produce them."""
    markers = set()
    for fmt in getattr(parser_cls, "formats", ()):
        markers.update((fmt.region_start, fmt.region_end, fmt.call_start, fmt.call_end,
                        fmt.separator, *fmt.drop_markers))
        for f in dataclasses.fields(fmt.encoding):
            value = getattr(fmt.encoding, f.name)
            if isinstance(value, str) and f.name not in _NOT_MARKERS:
                markers.update((value, value.strip()))
        if type(fmt.encoding).__name__ == "HarmonyMessage":  # header tokens live in a regex
            markers.update(_HARMONY_TOKENS)
    if split:
        markers = {part for m in markers for part in _special_token_parts(m)}
    return sorted((m for m in markers if m.strip()), key=lambda m: (-len(m), m))


_NOT_MARKERS = {"name_pattern", "name_template", "grammar_style", "padding"}
_HARMONY_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|constrain|>", "<|call|>",
                   "<|end|>", "<|return|>")
_SPECIAL_TOKEN = re.compile(r"<\|[^<>|]*\|>|<｜[^<>｜]*｜>")


def _special_token_parts(marker: str) -> list[str]:
    """`marker` split into the special tokens in it and the text between them."""
    tokens = _SPECIAL_TOKEN.findall(marker)
    if not tokens or tokens == [marker]:
        return [marker]
    return tokens + [t.strip() for t in _SPECIAL_TOKEN.split(marker) if t.strip()]


def parse_whole(parser_cls, output: str, request) -> Parsed:
    info = parser_cls(None).extract_tool_calls(output, request)
    assert info.tools_called == bool(info.tool_calls)
    calls = [(c.function.name, c.function.arguments) for c in info.tool_calls]
    for call in info.tool_calls:
        assert call.type == "function" and call.id
    return Parsed(info.content, calls, [c.id for c in info.tool_calls])


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
    ids: list[str] = []
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
                ids.append(delta.id)
            else:
                assert delta.index == len(calls) - 1, f"delta for call {delta.index} out of order"
                assert delta.id is None and delta.function.name is None, delta
                calls[delta.index][1] += delta.function.arguments or ""
    return Parsed(content or None, [(name, args) for name, args in calls], ids)


def assert_streaming_parity(parser_cls, output: str, request, all_splits: bool = True,
                            markers: Iterable[str] = ()) -> Parsed:
    """Every chunking reassembles to the non-streaming result; returns that result. `markers`
    adds the chunkings that cut at each marker's boundaries (see `marker_chunkings`)."""
    whole = parse_whole(parser_cls, output, request)
    for deltas in [*chunkings(output, all_splits=all_splits), *marker_chunkings(output, markers)]:
        streamed = parse_stream(parser_cls, deltas, request)
        assert streamed.normalized() == whole.normalized(), (
            f"chunking {deltas!r}:\nstreamed {streamed}\nwhole    {whole}")
    return whole
