"""The tool-parser interface and its registry.

Signatures follow vLLM's, so a vLLM parser plugin ports by changing its imports only. A parser
instance serves one request (one stream); the server builds a fresh one per request.
"""

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from callm.entrypoints.openai.protocol import (
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    ExtractedToolCallInformation,
    FunctionCall,
    ToolCall,
    random_tool_call_id,
)
from callm.plugins.registry import ParserRegistry
from callm.tool_parsers.formats import ToolCallFormat
from callm.tool_parsers.markup_stream import Arguments, CallStart, Content, Event, MarkupStream


class ToolParser:
    """Turns one request's model output into content and OpenAI tool calls."""

    def __init__(self, tokenizer: Any):
        self.model_tokenizer = tokenizer
        # State names vLLM parsers keep, so ported plugins find them.
        self.prev_tool_call_arr: list[dict] = []
        self.current_tool_id = -1
        self.current_tool_name_sent = False
        self.streamed_args_for_tool: list[str] = []

    @cached_property
    def vocab(self) -> dict[str, int]:
        return self.model_tokenizer.get_vocab()

    def adjust_request(self, request):
        """Change the request before generation (e.g. keep marker tokens in the text)."""
        return request

    def extract_tool_calls(self, model_output: str, request) -> ExtractedToolCallInformation:
        raise NotImplementedError

    def extract_tool_calls_streaming(self, previous_text: str, current_text: str, delta_text: str,
                                     previous_token_ids: Sequence[int],
                                     current_token_ids: Sequence[int],
                                     delta_token_ids: Sequence[int],
                                     request) -> DeltaMessage | None:
        raise NotImplementedError

    def finish_streaming(self, request) -> DeltaMessage | None:
        """The stream ended: return whatever was held back (e.g. text that looked like a
        marker prefix)."""
        return None

    @classmethod
    def tool_call_grammar(cls, tools, mode: str = "required", parallel: bool = True) -> dict:
        """The structural tag (see `callm.tool_parsers.grammar`) that makes a model write calls
        to `tools` the way this parser reads them; raises `UnsupportedToolFormat` when the
        parser has no declarative format to derive it from."""
        from callm.tool_parsers.grammar import UnsupportedToolFormat

        raise UnsupportedToolFormat(f"{cls.__name__} has no declarative tool-call format")


class FormatToolParser(ToolParser):
    """A parser defined entirely by `formats` (see `callm.tool_parsers.formats`)."""

    formats: ClassVar[tuple[ToolCallFormat, ...]] = ()

    def __init__(self, tokenizer: Any):
        super().__init__(tokenizer)
        self._stream: MarkupStream | None = None

    def new_tool_call_id(self) -> str:
        return random_tool_call_id()

    @classmethod
    def tool_call_grammar(cls, tools, mode: str = "required", parallel: bool = True) -> dict:
        """Derived from the canonical format, `formats[0]`."""
        from callm.tool_parsers.grammar import (ToolSpec, UnsupportedToolFormat,
                                                format_structural_tag, tool_specs)

        if not cls.formats:
            raise UnsupportedToolFormat(f"{cls.__name__} declares no formats")
        specs = tools if all(isinstance(t, ToolSpec) for t in tools) else tool_specs(tools)
        return format_structural_tag(cls.formats[0], specs, mode=mode, parallel=parallel)

    def adjust_request(self, request):
        # Markers are often special tokens: keep them in the text so the parser can see them.
        if request.tools and request.tool_choice != "none":
            request.skip_special_tokens = False
        return request

    def _new_stream(self, request) -> MarkupStream:
        return MarkupStream(self.formats, _tool_schemas(request), self.new_tool_call_id)

    def extract_tool_calls(self, model_output: str, request) -> ExtractedToolCallInformation:
        stream = self._new_stream(request)
        events = stream.feed(model_output) + stream.finish()
        content = "".join(e.text for e in events if isinstance(e, Content))
        calls: list[ToolCall] = []
        for event in events:
            if isinstance(event, CallStart):
                calls.append(ToolCall(id=event.id, function=FunctionCall(name=event.name,
                                                                         arguments="")))
            elif isinstance(event, Arguments):
                calls[event.index].function.arguments += event.text
        return ExtractedToolCallInformation(tools_called=bool(calls), tool_calls=calls,
                                            content=content or None)

    def extract_tool_calls_streaming(self, previous_text, current_text, delta_text,
                                     previous_token_ids, current_token_ids, delta_token_ids,
                                     request) -> DeltaMessage | None:
        if self._stream is None:
            self._stream = self._new_stream(request)
        return _delta_message(self._stream.feed(current_text))

    def finish_streaming(self, request) -> DeltaMessage | None:
        if self._stream is None:
            return None
        return _delta_message(self._stream.finish())


def _tool_schemas(request) -> dict[str, dict]:
    """The request's tools: name -> JSON Schema of the parameters."""
    tools = getattr(request, "tools", None) or []
    return {t.function.name: t.function.parameters or {} for t in tools}


def _delta_message(events: list[Event]) -> DeltaMessage | None:
    """OpenAI-shaped delta: a call's first entry has index, id, type and name; later entries
    carry argument fragments, merged per call within one delta."""
    if not events:
        return None
    content = "".join(e.text for e in events if isinstance(e, Content))
    tool_calls: list[DeltaToolCall] = []
    for event in events:
        if isinstance(event, CallStart):
            tool_calls.append(DeltaToolCall(index=event.index, id=event.id, type="function",
                                            function=DeltaFunctionCall(name=event.name)))
        elif isinstance(event, Arguments):
            last = tool_calls[-1] if tool_calls else None
            if last is not None and last.index == event.index:
                last.function.arguments = (last.function.arguments or "") + event.text
            else:
                tool_calls.append(DeltaToolCall(index=event.index,
                                                function=DeltaFunctionCall(arguments=event.text)))
    return DeltaMessage(content=content or None, tool_calls=tool_calls)


class ToolParserManager(ParserRegistry):
    """Registry of tool parsers by name (see `callm.plugins.registry`)."""

    kind = "tool parser"
    base = ToolParser
    entry_point_group = "callm.tool_parsers"
    tool_parsers: ClassVar[dict[str, type[ToolParser]]] = {}
    lazy_parsers: ClassVar[dict[str, str]] = {}

    @classmethod
    def _classes(cls) -> dict[str, type[ToolParser]]:
        return cls.tool_parsers

    @classmethod
    def get_tool_parser(cls, name: str) -> type[ToolParser]:
        return cls.get(name)

    @classmethod
    def import_tool_parser(cls, path_or_module: str | Path) -> None:
        cls.import_plugin(path_or_module)
