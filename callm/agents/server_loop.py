"""The server-side tool loop for `{"type": "mcp", "server_label": ...}` tools in
`/v1/chat/completions` (`callm serve --mcp-config servers.json`).

The MCP entries are replaced by the functions their servers list (only `allowed_tools` when
given). Each round is an ordinary generation; while every call of a turn names an MCP tool, the
server runs them all (concurrently, each bounded by the ToolLimits: timeout, concurrent calls,
result size — a failure is an error result the model reads, never an HTTP error), appends the
assistant turn and the `tool` results, and asks again with tool_choice "auto" ("none" when the
server parses no calls in auto mode), so a forced first call is followed by an answer. After
`max_tool_rounds` rounds (request field; default and ceiling `--max-tool-rounds`) the next
turn is asked with tool_choice "none": the model must answer. A turn that calls any of the
client's own function tools ends the loop: it goes back as usual, `tool_calls` with
`finish_reason: "tool_calls"` (MCP calls in that same turn included, not run); so does a turn
cut off by `max_tokens` (which bounds each turn), with `finish_reason: "length"`.

What the client gets (callm extensions are plain extra JSON fields, which the `openai` client
keeps: `response.executed_tool_calls`, `chunk.executed_tool_calls`)::

    non-streamed: the final turn's message, finish_reason and tool_calls; `content` (and
      `reasoning`) is every turn's text in order; `usage` sums all rounds; and
      "executed_tool_calls": [{"id", "round", "server_label", "name", "arguments", "output",
                               "is_error", "latency_ms"}, ...]   in call order
    streamed (stream=true):
      data: {..., "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
      data: {..., "choices": [{"index": 0, "delta": {"content": "..."}}]}     every turn's text,
                                                                              as generated
      data: {..., "choices": [{"index": 0, "delta": {}}],
             "executed_tool_calls": [{...one call...}]}                      as each call finishes
      ... the next turns the same way; a turn's tool-call deltas are held back until a call
          names a client function (then they stream live) or the turn ends ...
      data: {..., "choices": [{"index": 0, "delta": {...}, "finish_reason": "stop"}]}
      data: {..., "choices": [], "usage": {...all rounds...}}                with include_usage
      data: [DONE]

A client that disconnects stops the loop: the round generating is aborted (its KV blocks
freed) and the calls running are cancelled (MCP sends them `notifications/cancelled`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from callm.agents.tools import ToolBox, ToolResult
from callm.entrypoints.openai.protocol import (ChatCompletionRequest,
                                               ChatCompletionResponseStreamChoice,
                                               ChatCompletionToolsParam, DeltaMessage,
                                               ExecutedToolCall, FunctionDefinition, UsageInfo)
from callm.entrypoints.openai.serving_common import FINISH_REASONS, APIError

DISCONNECT_POLL_S = 0.1  # how often a round of tools checks that the client is still there


class ClientGone(Exception):
    pass


def expand_mcp_tools(request: ChatCompletionRequest, mcp) -> tuple[ChatCompletionRequest, dict]:
    """The request with function tools only, and {function name: (tool dict, async runner)}
    for the MCP ones."""
    if mcp is None:
        raise APIError("mcp tools need a server started with --mcp-config", param="tools")
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
            function = FunctionDefinition(**runners[name][0]["function"])
            tools.append(ChatCompletionToolsParam(function=function))
            mcp_runners[name] = runners[name]
    if not tools:
        raise APIError("the mcp tools given list no tools", param="tools")
    names = [t.function.name for t in tools]
    choice = request.tool_choice
    named = getattr(getattr(choice, "function", None), "name", None)
    if named is not None and named not in names:
        raise APIError(f"tool_choice names function {named!r}, which is not in tools "
                       f"({', '.join(names)})", param="tool_choice")
    return request.model_copy(update={"tools": tools}), mcp_runners


class _Loop:
    """One request's loop: its MCP tools, its limits, what ran and what it cost."""

    def __init__(self, serving, request: ChatCompletionRequest, is_disconnected):
        ctx = serving.ctx
        if request.n != 1:
            raise APIError("mcp tools need n=1", param="n")
        rounds = request.max_tool_rounds or ctx.max_tool_rounds
        if rounds > ctx.max_tool_rounds:
            raise APIError(f"max_tool_rounds is {rounds}, above this server's limit of "
                           f"{ctx.max_tool_rounds} (--max-tool-rounds)", param="max_tool_rounds")
        self.serving, self.ctx, self.max_rounds = serving, ctx, rounds
        self.request, runners = expand_mcp_tools(request, ctx.mcp)
        self.toolbox = ToolBox(extra=runners, limits=ctx.tool_limits or ctx.mcp.limits)
        self.labels = ctx.mcp.labels()
        self.is_disconnected = is_disconnected
        self.rounds = 0
        self.executed: list[ExecutedToolCall] = []
        self.usage = UsageInfo()
        self.reasoning_tokens = 0

    def runs(self, calls, finish_reason: str) -> bool:
        """Whether the server runs this turn's calls: all MCP, rounds left, and not cut off by
        max_tokens (a cut-off turn goes back as it is, with finish_reason "length")."""
        return (bool(calls) and finish_reason != "length" and self.rounds < self.max_rounds
                and all(c.function.name in self.toolbox.extra for c in calls))

    def count(self, prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> None:
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens
        self.reasoning_tokens += reasoning_tokens

    def final_usage(self) -> UsageInfo:
        return self.serving._usage(self.usage.prompt_tokens, self.usage.completion_tokens,
                                   self.reasoning_tokens)

    async def execute(self, calls) -> AsyncIterator[ExecutedToolCall]:
        """Run one round's calls on the MCP servers' event loop; yield each record as its call
        finishes; ClientGone (calls cancelled) if the client leaves meanwhile."""
        self.rounds += 1
        self.ctx.metrics.tool_rounds.labels(self.ctx.metrics.model_name).inc()
        background = self.ctx.mcp.background
        futures = {asyncio.wrap_future(background.submit(self.toolbox.run(
            c.id, c.function.name, c.function.arguments))): c for c in calls}
        self.results: dict[str, ToolResult] = {}
        pending = set(futures)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=DISCONNECT_POLL_S,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=list(futures).index):
                    call, result = futures[future], future.result()  # run() never raises
                    self.results[call.id] = result
                    server = self.labels.get(call.function.name, "")
                    self.ctx.metrics.tool_call(server, call.function.name,
                                               result.latency_ms / 1000, result.is_error)
                    record = ExecutedToolCall(
                        id=call.id, round=self.rounds, server_label=server,
                        name=call.function.name, arguments=call.function.arguments,
                        output=result.content, is_error=result.is_error,
                        latency_ms=round(result.latency_ms, 3))
                    self.executed.append(record)
                    yield record
                if pending and await self.is_disconnected():
                    raise ClientGone
        finally:
            for future in pending:
                future.cancel()

    def next_request(self, content: str | None, reasoning: str | None, calls
                     ) -> ChatCompletionRequest:
        """The request extended by the assistant turn and its calls' results."""
        turn = {"role": "assistant", "content": content or "",
                "tool_calls": [c.model_dump() for c in calls]}
        if reasoning:
            turn["reasoning"] = reasoning
        answers = [self.results[c.id].message() for c in calls]
        more = ChatCompletionRequest(messages=[turn, *answers]).messages
        last = self.rounds >= self.max_rounds
        choice = "auto" if self.ctx.enable_auto_tool_choice and not last else "none"
        return self.request.model_copy(update={"messages": [*self.request.messages, *more],
                                               "tool_choice": choice})


async def create_with_mcp(serving, request: ChatCompletionRequest, is_disconnected):
    """`serving` is the OpenAIServingChat, whose `start` runs each round. Errors found before
    the first round (bad request, unknown server, too long) are APIErrors (4xx)."""
    loop = _Loop(serving, request, is_disconnected)
    generation = await serving.start(loop.request)
    if request.stream:
        return _stream(loop, generation)
    try:
        return await _whole(loop, generation)
    except ClientGone:
        raise APIError("client disconnected", 499) from None


async def _whole(loop: _Loop, generation):
    serving = loop.serving
    contents, reasonings = [], []
    while True:
        response = await serving._whole(generation, loop.is_disconnected)
        usage = response.usage
        loop.count(usage.prompt_tokens, usage.completion_tokens,
                   usage.completion_tokens_details.reasoning_tokens
                   if usage.completion_tokens_details else 0)
        message = response.choices[0].message
        contents.append(message.content or "")
        reasonings.append(message.reasoning_content or "")
        calls = message.tool_calls
        if not loop.runs(calls, response.choices[0].finish_reason):
            break
        async with aclosing(loop.execute(calls)) as records:
            async for _ in records:
                pass
        if await loop.is_disconnected():
            raise ClientGone
        loop.request = loop.next_request(message.content, message.reasoning_content, calls)
        generation = await serving.start(loop.request)
    message.content = "".join(contents) or None
    message.reasoning_content = "".join(reasonings) or None
    response.usage = loop.final_usage()
    order = {c.id: i for i, c in enumerate(loop.executed)}
    response.executed_tool_calls = sorted(loop.executed, key=lambda r: (r.round, order[r.id]))
    return response


async def _stream(loop: _Loop, generation) -> AsyncIterator[str]:
    serving, mcp_tools = loop.serving, loop.toolbox.extra
    request = generation.prepared.request
    chunk = serving.chunk_writer(generation)
    finish = None
    held: list = []  # this turn's tool-call deltas not sent yet
    yield chunk([ChatCompletionResponseStreamChoice(
        index=0, delta=DeltaMessage(role="assistant", content=""))])
    try:
        while True:
            reader, token_ids = serving.pipeline.reader(generation.prepared), [[]]
            held, live = [], False
            async with aclosing(serving.stream_choices(generation, [reader], token_ids)) as choices:
                async for choice in choices:
                    delta = choice.delta
                    if delta.tool_calls and not live:
                        if any(tc.function and tc.function.name
                               and tc.function.name not in mcp_tools for tc in delta.tool_calls):
                            live = True  # a client function: this turn goes back to the client
                            delta.tool_calls, held = held + delta.tool_calls, []
                        else:
                            held, delta.tool_calls = held + delta.tool_calls, []
                    finish, choice.finish_reason = choice.finish_reason, None
                    if delta.content or delta.reasoning_content or delta.tool_calls or \
                            choice.logprobs:
                        yield chunk([choice])
            final = generation.final
            generation.timer.report(serving.ctx, final)
            out = final.outputs[0]
            loop.count(len(final.prompt_token_ids), len(out.token_ids),
                       reader.reasoning_tokens(out.token_ids))
            whole = serving.pipeline.reader(generation.prepared).whole(
                out.text, FINISH_REASONS[out.finish_reason])
            if live or not loop.runs(whole.tool_calls, whole.finish_reason):
                break
            async with aclosing(loop.execute(whole.tool_calls)) as records:
                async for record in records:
                    yield chunk([ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage())],
                                executed_tool_calls=[record])
            loop.request = loop.next_request(whole.content, whole.reasoning, whole.tool_calls)
            generation = await serving.start(loop.request)
        yield chunk([ChatCompletionResponseStreamChoice(
            index=0, delta=DeltaMessage(tool_calls=held), finish_reason=finish or "stop")])
    except ClientGone:
        return
    except Exception as e:  # a later round failed (e.g. the conversation outgrew the context)
        from callm.entrypoints.openai.serving_chat import stream_error

        yield stream_error(e)
    if request.stream_options and request.stream_options.include_usage:
        yield chunk([], loop.final_usage())
    yield "data: [DONE]\n\n"
