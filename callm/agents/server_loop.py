"""The server-side tool loop for `{"type": "mcp", "server_label": ...}` tools in
`/v1/chat/completions` (`callm serve --mcp-config servers.json`).

The MCP entries are replaced by the functions their servers list (only `allowed_tools` when
given), each round is an ordinary chat completion, and while every call of a turn names an MCP
tool the server runs them all, appends the assistant turn and the `tool` results, and asks
again (at most MAX_ROUNDS rounds) with tool_choice "auto" — "none" when the server parses no
calls in auto mode — so a forced first call is followed by an answer. A turn that calls one of the client's own functions goes
back to the client as usual; the response reports the usage of all rounds together.
"""

from __future__ import annotations

import asyncio
import json

from callm.entrypoints.openai.protocol import (ChatCompletionRequest, ChatCompletionToolsParam,
                                               FunctionDefinition)
from callm.entrypoints.openai.serving_common import APIError

MAX_ROUNDS = 8


def expand_mcp_tools(request: ChatCompletionRequest, mcp) -> tuple[ChatCompletionRequest, dict]:
    """The request with function tools only, and {function name: async runner}."""
    if mcp is None:
        raise APIError("mcp tools need a server started with --mcp-config", param="tools")
    if request.stream:
        raise APIError("mcp tools are not supported with stream=true yet", param="stream")
    listed = mcp.tool_names()  # {name: (connection, mcp tool)}
    runners = mcp.runners()
    tools, mcp_runners = [], {}
    for tool in request.tools:
        if tool.type != "mcp":
            tools.append(tool)
            continue
        if tool.server_label not in mcp.connections:
            raise APIError(f"no MCP server {tool.server_label!r} (configured: "
                           f"{', '.join(mcp.connections) or 'none'})", param="tools")
        for name, (conn, mcp_tool) in listed.items():
            if conn.name != tool.server_label or (
                    tool.allowed_tools is not None and mcp_tool.name not in tool.allowed_tools):
                continue
            schema, runner = runners[name]
            tools.append(ChatCompletionToolsParam(function=FunctionDefinition(**schema["function"])))
            mcp_runners[name] = runner
    if not tools:
        raise APIError("the mcp tools given list no tools", param="tools")
    names = [t.function.name for t in tools]
    choice = request.tool_choice
    named = getattr(getattr(choice, "function", None), "name", None)
    if named is not None and named not in names:
        raise APIError(f"tool_choice names function {named!r}, which is not in tools "
                       f"({', '.join(names)})", param="tool_choice")
    return request.model_copy(update={"tools": tools}), mcp_runners


async def create_with_mcp(serving, request: ChatCompletionRequest, is_disconnected):
    """`serving` is the OpenAIServingChat; its `create` runs each round."""
    ctx = serving.ctx
    request, runners = expand_mcp_tools(request, ctx.mcp)
    prompt_tokens = completion_tokens = 0
    for round_ in range(MAX_ROUNDS + 1):
        response = await serving.create(request, is_disconnected)
        prompt_tokens += response.usage.prompt_tokens
        completion_tokens += response.usage.completion_tokens
        message = response.choices[0].message
        calls = message.tool_calls or []
        if (not calls or round_ == MAX_ROUNDS or len(response.choices) != 1
                or any(c.function.name not in runners for c in calls)):
            break
        results = await asyncio.gather(*(_run(ctx.mcp, runners[c.function.name],
                                              c.function.arguments) for c in calls))
        turn = {"role": "assistant", "content": message.content or "",
                "tool_calls": [c.model_dump() for c in calls]}
        answers = [{"role": "tool", "tool_call_id": c.id, "name": c.function.name, "content": r}
                   for c, r in zip(calls, results)]
        more = ChatCompletionRequest(messages=[turn, *answers]).messages
        request = request.model_copy(update={
            "messages": [*request.messages, *more],
            "tool_choice": "auto" if ctx.enable_auto_tool_choice else "none"})
    response.usage.prompt_tokens = prompt_tokens
    response.usage.completion_tokens = completion_tokens
    response.usage.total_tokens = prompt_tokens + completion_tokens
    return response


async def _run(mcp, runner, arguments: str) -> str:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        return f"Error: the arguments are not a JSON object ({e}): {arguments}"
    text, _ = await asyncio.wrap_future(mcp.background.submit(runner(args)))
    return text
