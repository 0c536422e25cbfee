"""The tool-parser interface and its registry.

Signatures follow vLLM's, so a vLLM parser plugin ports by changing its imports only. A parser
instance serves one request (one stream); the server builds a fresh one per request.
"""

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Sequence
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


class ToolParserManager:
    """Registry of tool parsers by name. Built-ins and entry-point parsers load on first use."""

    tool_parsers: ClassVar[dict[str, type[ToolParser]]] = {}
    lazy_parsers: ClassVar[dict[str, str]] = {}  # name -> "module:ClassName"
    _entry_points_loaded: ClassVar[bool] = False

    @classmethod
    def register_lazy_module(cls, name: str, target: str) -> None:
        cls.lazy_parsers.setdefault(name, target)

    @classmethod
    def register_module(cls, name: str | list[str] | None = None, force: bool = True,
                        module: type[ToolParser] | None = None) -> Callable | type[ToolParser]:
        """Register a parser class: `@register_module("x")` or `register_module("x", module=C)`."""
        if isinstance(name, type):  # bare @register_module
            name, module = None, name

        def register(parser_cls: type[ToolParser]) -> type[ToolParser]:
            if not (isinstance(parser_cls, type) and issubclass(parser_cls, ToolParser)):
                raise TypeError(f"{parser_cls!r} is not a ToolParser subclass")
            names = [name] if isinstance(name, str) else (name or [parser_cls.__name__])
            for n in names:
                if not force and n in cls.tool_parsers:
                    raise KeyError(f"tool parser {n!r} is already registered")
                cls.tool_parsers[n] = parser_cls
            return parser_cls

        return register(module) if module is not None else register

    @classmethod
    def get_tool_parser(cls, name: str) -> type[ToolParser]:
        if name not in cls.tool_parsers:
            cls._load_entry_points()
            target = cls.lazy_parsers.get(name)
            if target is not None:
                module_name, _, class_name = target.partition(":")
                cls.tool_parsers[name] = getattr(importlib.import_module(module_name), class_name)
        if name not in cls.tool_parsers:
            raise KeyError(f"unknown tool parser {name!r}; known parsers: "
                           f"{', '.join(cls.list_registered())}")
        return cls.tool_parsers[name]

    @classmethod
    def list_registered(cls) -> list[str]:
        cls._load_entry_points()
        return sorted(set(cls.tool_parsers) | set(cls.lazy_parsers))

    @classmethod
    def import_tool_parser(cls, path_or_module: str | Path) -> None:
        """Import a plugin by file path or module name; its `register_module` calls run."""
        path = Path(path_or_module)
        if path.suffix == ".py" or path.exists():
            if not path.is_file():
                raise FileNotFoundError(f"tool parser plugin {str(path)!r} does not exist")
            module_name = f"callm_plugin_{path.stem}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                sys.modules.pop(module_name, None)
                raise ImportError(_plugin_error(path, e)) from e
        else:
            importlib.import_module(str(path_or_module))

    @classmethod
    def _load_entry_points(cls) -> None:
        """Parsers installed by other packages under the entry-point group `callm.tool_parsers`
        (`name = "module:Class"`); they load lazily like built-ins."""
        if cls._entry_points_loaded:
            return
        cls._entry_points_loaded = True
        from callm.plugins import tool_parser_entry_points

        for name, target in tool_parser_entry_points().items():
            cls.register_lazy_module(name, target)


def _plugin_error(path: Path, error: Exception) -> str:
    """Name the plugin file and the line in it where importing failed."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        line = frames[-1].lineno if frames else None
    where = f"{path}:{line}" if line else str(path)
    return f"failed to import tool parser plugin {where}: {type(error).__name__}: {error}"
