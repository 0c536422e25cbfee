"""MCP servers as tools, through the official `mcp` SDK (client side).

The config is the common `mcpServers` file (Claude Desktop, Cursor, ...)::

    {"mcpServers": {
        "calc": {"command": "python", "args": ["calc_server.py"], "env": {"KEY": "..."}},
        "web":  {"url": "http://127.0.0.1:8000/mcp"}}}

A `command` server is started over stdio (it inherits only HOME, PATH, SHELL, TERM, USER and
LOGNAME plus its `env`, as the SDK does); a `url` server is reached over streamable HTTP. Each
server's session lives as one task on the agents' background event loop.

Tool names: a tool keeps its own name when no other configured server has a tool of that name;
otherwise it is listed as `server__tool`. A server whose process has died is started again (and
listed again) on its next call.

`ToolLimits.max_concurrent_calls` bounds the calls in flight across all servers (one semaphore
per `MCPServers`, so per `callm serve` process or per `LLM`); the per-call timeout and the cap on
result size are applied by `ToolBox.run`, which every call goes through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SEPARATOR = "__"


def load_mcp_config(config: str | os.PathLike | dict) -> dict[str, dict]:
    """{server name: its entry} from a path or an already-loaded dict; ValueError on a
    malformed file."""
    if not isinstance(config, dict):
        path = Path(config).expanduser()
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the MCP config {str(path)!r}: {e}") from None
    servers = config.get("mcpServers", config.get("servers"))
    if not isinstance(servers, dict):
        raise ValueError('an MCP config needs {"mcpServers": {"name": {"command": ...} | '
                         '{"url": ...}}}')
    for name, entry in servers.items():
        if not isinstance(entry, dict) or not ("command" in entry or "url" in entry):
            raise ValueError(f"MCP server {name!r} needs a `command` (stdio) or a `url` "
                             "(streamable HTTP)")
    return servers


class MCPConnection:
    """One server: connect (start the process), list tools, call tools, reconnect if it died."""

    def __init__(self, name: str, entry: dict):
        self.name, self.entry = name, entry
        self.session = None
        self.tools: list = []  # mcp_types.Tool
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Future | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and self.session is not None

    async def connect(self) -> None:
        """Start (or restart) the session task and wait until the tools are listed."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self.alive:
                return
            if self._task is None or self._task.done():
                self._ready = asyncio.get_running_loop().create_future()
                self._stop = asyncio.Event()
                self._task = asyncio.create_task(self._serve(self._ready),
                                                 name=f"mcp-{self.name}")
            # raises what connecting raised; a caller that gives up (its timeout) leaves the
            # start going on, and the next caller waits for that same start
            await asyncio.shield(self._ready)

    async def _serve(self, ready: asyncio.Future) -> None:
        from mcp import ClientSession

        try:
            async with AsyncExitStack() as stack:
                if "url" in self.entry:
                    from mcp.client.streamable_http import streamable_http_client

                    streams = await stack.enter_async_context(
                        streamable_http_client(self.entry["url"]))
                else:
                    from mcp.client.stdio import StdioServerParameters, stdio_client

                    params = StdioServerParameters(
                        command=self.entry["command"], args=list(self.entry.get("args", [])),
                        env=self.entry.get("env"), cwd=self.entry.get("cwd"))
                    streams = await stack.enter_async_context(stdio_client(params))
                read, write = streams[0], streams[1]
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = await self._list(session)
                self.session = session
                if not ready.done():
                    ready.set_result(None)
                await self._stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError(repr(e)))
            elif not isinstance(e, asyncio.CancelledError | GeneratorExit):
                logger.warning("MCP server %s stopped: %r", self.name, e)
        finally:
            self.session = None

    @staticmethod
    async def _list(session) -> list:
        tools, cursor = [], None
        while True:
            if cursor is None:
                page = await session.list_tools()
            else:
                import mcp_types

                page = await session.list_tools(
                    params=mcp_types.PaginatedRequestParams(cursor=cursor))
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call(self, tool: str, arguments: dict) -> tuple[str, bool]:
        """(text, is_error) of one call. A server found dead (its process exited, its
        connection closed) is started again first; a call during which it died is not retried
        (it may have done its work) but the next call finds it restarted."""
        if not self.alive:
            try:
                await self.connect()
            except Exception as e:
                return f"Error: MCP server {self.name} cannot be started: {e}", True
        try:
            result = await self.session.call_tool(tool, arguments)
        except Exception as e:
            if not _is_protocol_error(e):  # the transport is gone: start afresh next time
                await self.close()
            return f"Error: MCP tool {tool} on {self.name} failed: {e}", True
        return _result_text(result), bool(result.is_error)

    async def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except (asyncio.TimeoutError, Exception):
                self._task.cancel()


def _is_protocol_error(e: Exception) -> bool:
    """An error the server answered with (its session still works), not a dead transport."""
    from mcp.shared.exceptions import MCPError

    return isinstance(e, MCPError) and e.code != _CONNECTION_CLOSED


_CONNECTION_CLOSED = -32000  # mcp_types.jsonrpc.CONNECTION_CLOSED


def _result_text(result) -> str:
    parts = []
    for block in result.content:
        if getattr(block, "type", None) == "text":
            parts.append(block.text)
        else:
            parts.append(json.dumps(block.model_dump(mode="json", exclude_none=True)))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


class MCPServers:
    """Every server of an `mcpServers` config, connected on `background` (a BackgroundLoop)."""

    def __init__(self, config: str | os.PathLike | dict, background, timeout: float = 60,
                 limits=None):
        from callm.agents.tools import ToolLimits

        self.background = background
        self.limits = limits or ToolLimits()
        cap = self.limits.max_concurrent_calls
        self._slots = asyncio.Semaphore(cap) if cap else None  # used on `background`'s loop
        self.connections = {name: MCPConnection(name, entry)
                            for name, entry in load_mcp_config(config).items()}
        try:
            background.run(self._connect_all(), timeout)
        except Exception:
            self.close()
            raise

    async def _connect_all(self) -> None:
        async def one(conn):
            try:
                await conn.connect()
            except Exception as e:
                raise RuntimeError(f"MCP server {conn.name!r} failed to start: {e!r}") from e

        await asyncio.gather(*(one(c) for c in self.connections.values()))

    def tool_names(self) -> dict[str, tuple[MCPConnection, Any]]:
        """{listed name: (connection, mcp tool)}: the tool's own name when unique among the
        servers, else `server__tool`."""
        counts: dict[str, int] = {}
        for conn in self.connections.values():
            for tool in conn.tools:
                counts[tool.name] = counts.get(tool.name, 0) + 1
        names = {}
        for conn in self.connections.values():
            for tool in conn.tools:
                name = tool.name if counts[tool.name] == 1 else f"{conn.name}{SEPARATOR}{tool.name}"
                names[name] = (conn, tool)
        return names

    def tools(self) -> list[dict]:
        """The servers' tools as OpenAI tool dicts."""
        return [runner[0] for runner in self.runners().values()]

    def runners(self) -> dict[str, tuple[dict, Any]]:
        """{name: (OpenAI tool dict, async runner(arguments) -> (text, is_error))} for ToolBox;
        a runner runs on `background`'s loop, holding one of the concurrent-call slots."""
        out = {}
        for name, (conn, tool) in self.tool_names().items():
            function = {"name": name}
            if tool.description:
                function["description"] = tool.description
            function["parameters"] = tool.input_schema or {"type": "object", "properties": {}}

            async def runner(arguments, conn=conn, tool_name=tool.name):
                if self._slots is None:
                    return await conn.call(tool_name, arguments)
                async with self._slots:
                    return await conn.call(tool_name, arguments)

            out[name] = ({"type": "function", "function": function}, runner)
        return out

    def labels(self) -> dict[str, str]:
        """{listed tool name: its server's name}."""
        return {name: conn.name for name, (conn, _) in self.tool_names().items()}

    def call(self, name: str, arguments: dict, timeout: float | None = None) -> tuple[str, bool]:
        """Call a listed tool from synchronous code (no ToolLimits timeout or result cap)."""
        return self.background.run(self.runners()[name][1](arguments), timeout)

    def close(self) -> None:
        async def close_all():
            await asyncio.gather(*(c.close() for c in self.connections.values()),
                                 return_exceptions=True)

        try:
            self.background.run(close_all(), 20)
        except Exception as e:  # never let shutdown raise
            logger.warning("closing MCP servers: %r", e)
