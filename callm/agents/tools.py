"""Tools callm runs itself: Python functions (sync or async), a catch-all callback, MCP tools.

`ToolBox` resolves what a user passes as `tools=` into (a) the OpenAI tool dicts the model sees
and (b) how each one runs. `ToolBox.run(call)` never raises: an unknown tool, arguments that are
not JSON or do not fit the function's signature, and a tool that raises all become an error
text the model reads as the tool's result (`ToolResult.is_error`), and so does a call that runs
past `ToolLimits.timeout`; a result longer than `ToolLimits.max_result_chars` is cut (with a
marker saying so) so one tool cannot flood the context.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from callm.entrypoints.chat_utils import function_to_tool

ToolCallback = Callable[[str, dict], "str | Awaitable[str]"]


@dataclass(frozen=True)
class ToolLimits:
    """Bounds on tool calls. `timeout`: seconds one call may take (queueing for a free slot
    included) before it becomes an error result — a sync Python function cannot be stopped, its
    result is just no longer awaited; `max_concurrent_calls`: MCP calls in flight at once in
    this process (a server-wide cap under `callm serve`); `max_result_chars`: longer results
    are cut. None: no bound."""

    timeout: float | None = 30.0
    max_concurrent_calls: int | None = 16
    max_result_chars: int | None = 16_000

    def __post_init__(self):
        for name in ("timeout", "max_concurrent_calls", "max_result_chars"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"ToolLimits.{name} must be positive (or None), got {value!r}")


TRUNCATED = "\n[truncated by callm: {kept} of {total} characters shown]"


def truncate(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED.format(kept=limit, total=len(text))


@dataclass
class ToolResult:
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    latency_ms: float = 0.0

    def message(self) -> dict:
        """The `role: tool` message that answers the call."""
        return {"role": "tool", "tool_call_id": self.tool_call_id, "name": self.name,
                "content": self.content}


class _Function:
    """A Python function as a tool: its schema, and a pydantic model that checks arguments
    against its signature before it is called."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.tool = function_to_tool(fn)
        self.name = self.tool["function"]["name"]
        self.is_async = inspect.iscoroutinefunction(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
        fields, self.names = {}, []
        for i, (name, p) in enumerate(inspect.signature(fn).parameters.items()):
            default = ... if p.default is p.empty else p.default
            fields[f"p{i}"] = (hints[name], pydantic.Field(default, alias=name))
            self.names.append(name)
        self.model = pydantic.create_model(
            f"{self.name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields)

    def bind(self, arguments: dict) -> dict:
        """The keyword arguments to call with; pydantic.ValidationError when they do not fit."""
        validated = self.model.model_validate(arguments)
        return {name: getattr(validated, f"p{i}") for i, name in enumerate(self.names)}


class ToolBox:
    """`tools`: Python functions, OpenAI tool dicts (run by `callback`) and `extra` named
    runners (e.g. MCP tools: name -> (tool dict, async runner(arguments) -> (text, is_error)))."""

    def __init__(self, tools: Sequence[Callable | Mapping] = (),
                 callback: ToolCallback | None = None,
                 extra: Mapping[str, tuple[dict, Callable]] | None = None,
                 limits: ToolLimits | None = None):
        self.callback = callback
        self.limits = limits or ToolLimits()
        self.functions: dict[str, _Function] = {}
        self.tools: list[dict] = []
        self.extra = dict(extra or {})
        for t in tools:
            if callable(t) and not isinstance(t, Mapping):
                f = _Function(t)
                self.functions[f.name] = f
                self.tools.append(f.tool)
            elif isinstance(t, Mapping):
                t = dict(t) if "function" in t else {"type": "function", "function": dict(t)}
                self.tools.append(t)
            else:
                raise ValueError(f"a tool must be a function or an OpenAI tool dict, got {t!r}")
        # a function or tool dict of the caller's hides an MCP tool of the same name
        own = {t["function"]["name"] for t in self.tools}
        self.dict_names = own - set(self.functions)
        self.extra = {name: runner for name, runner in self.extra.items() if name not in own}
        self.tools += [tool for tool, _ in self.extra.values()]
        names = [t["function"]["name"] for t in self.tools]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"two tools are named {', '.join(dup)}")

    async def run(self, call_id: str, name: str, arguments: str, pool=None) -> ToolResult:
        """Run one call (`arguments`: the model's JSON text); sync functions and callbacks run
        in `pool` (an Executor), async ones here. Never raises (but can be cancelled)."""
        start = time.perf_counter()
        timeout = self.limits.timeout
        try:
            result = await asyncio.wait_for(self._run(call_id, name, arguments, pool), timeout)
        except TimeoutError:
            result = ToolResult(call_id, name, f"Error: {name} timed out after {timeout:g} s",
                                True)
        result.content = truncate(result.content, self.limits.max_result_chars)
        result.latency_ms = (time.perf_counter() - start) * 1000
        return result

    async def _run(self, call_id: str, name: str, arguments: str, pool) -> ToolResult:
        def error(text: str) -> ToolResult:
            return ToolResult(call_id, name, f"Error: {text}", True)

        try:
            args = json.loads(arguments) if arguments and arguments.strip() else {}
        except ValueError as e:
            return error(f"the arguments of {name} are not valid JSON ({e}): {arguments}")
        if not isinstance(args, dict):
            return error(f"the arguments of {name} must be a JSON object, got {arguments}")
        loop = asyncio.get_running_loop()
        try:
            if name in self.functions:
                f = self.functions[name]
                try:
                    kwargs = f.bind(args)
                except pydantic.ValidationError as e:
                    problems = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'arguments'}: "
                                         f"{p['msg']}" for p in e.errors())
                    return error(f"invalid arguments for {name}: {problems}")
                if f.is_async:
                    value = await f.fn(**kwargs)
                else:
                    value = await loop.run_in_executor(pool, lambda: f.fn(**kwargs))
            elif name in self.extra:
                text, is_error = await self.extra[name][1](args)
                return ToolResult(call_id, name, text, is_error)
            elif self.callback is not None:  # the caller's tool dicts, and any other name
                if inspect.iscoroutinefunction(self.callback):
                    value = await self.callback(name, args)
                else:
                    value = await loop.run_in_executor(pool, self.callback, name, args)
                    if inspect.isawaitable(value):
                        value = await value
            elif name in self.dict_names:
                return error(f"{name} cannot run here: no tool_callback was given")
            else:
                known = ", ".join(sorted(self.functions) + sorted(self.extra)) or "none"
                return error(f"there is no tool named {name!r} (tools: {known})")
        except Exception as e:  # the model sees what went wrong; the batch goes on
            return error(f"{name} raised {type(e).__name__}: {e}")
        return ToolResult(call_id, name, _text(value))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
