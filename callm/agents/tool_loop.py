"""The batched tool loop behind `LLM.run_tools`.

Every conversation is an agent: generate a turn, run the tools it called, add their results,
generate again, until a turn calls nothing or `max_tool_rounds` rounds of tools have run. All
agents share ONE continuous batch: the engine keeps stepping the agents that are generating
while other agents' tools run (sync tools in a thread pool, async tools and MCP calls on an
event loop in a background thread), and an agent's next turn joins the batch as soon as its
tools are done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from callm.agents.tools import ToolBox, ToolResult
from callm.engine.request import RequestOutput

_ids = itertools.count()


class BackgroundLoop:
    """An asyncio event loop running in a daemon thread: async tools and MCP sessions live here
    while the caller's thread drives the engine."""

    def __init__(self, name: str = "callm-agents"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float | None = None):
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


@dataclass
class AgentResult:
    """One conversation's run. `messages`: the whole transcript — the conversation given, then
    every assistant turn (with its `tool_calls`) and every tool result, in order; `output`: the
    last turn's RequestOutput; `content`: its answer text (calls removed); `rounds`: how many
    rounds of tools ran; `finish_reason`: "stop" (answered without calls), "length" (the last
    turn hit max_tokens), "max_tool_rounds" (still calling when the rounds ran out: that last
    turn's calls are in the transcript, not run) or "error" (`error` says why, e.g. the
    conversation outgrew the context)."""

    messages: list[dict]
    output: RequestOutput | None = None
    content: str | None = None
    reasoning: str | None = None
    rounds: int = 0
    finish_reason: str = "stop"
    error: str | None = None
    tool_results: list[ToolResult] = field(default_factory=list)

    @property
    def tool_calls(self) -> list[dict]:
        """Every call the model made, in order."""
        return [c for m in self.messages if m.get("role") == "assistant"
                for c in m.get("tool_calls") or []]


@dataclass
class _Agent:
    index: int
    result: AgentResult
    toolbox: ToolBox
    choice: object
    params: object
    prepared: object = None
    request_id: str | None = None
    future: concurrent.futures.Future | None = None
    turn_started: int = 0  # engine step at which the current turn began


def run_tool_loop(engine, pipeline, conversations: Sequence[Sequence[dict]],
                  toolboxes: Sequence[ToolBox], sampling_params, tool_choices: list,
                  max_tool_rounds: int, background: BackgroundLoop,
                  pool: concurrent.futures.Executor, prepare) -> list[AgentResult]:
    """Run every conversation's loop through `engine` (an LLMEngine), each with its own
    ToolBox; `prepare(messages, toolbox, choice, params)` -> (PreparedChat, SamplingParams for
    the engine) renders one turn with `pipeline` (whose ChoiceReader reads the turn's calls)."""
    agents = [_Agent(i, AgentResult([dict(m) for m in conv]), box, choice, params)
              for i, (conv, box, choice, params) in enumerate(zip(
                  conversations, toolboxes, tool_choices, sampling_params))]
    by_request: dict[str, _Agent] = {}
    waiting: dict[concurrent.futures.Future, _Agent] = {}

    def start_turn(agent: _Agent, first: bool) -> None:
        try:
            agent.prepared, params = prepare(agent.result.messages, agent.toolbox, agent.choice,
                                             agent.params)
            agent.request_id = f"agent-{next(_ids)}-{agent.index}-{agent.result.rounds}"
            engine.add_request(agent.request_id, agent.prepared.prompt, params,
                               add_special_tokens=False)
        except ValueError as e:
            if first:
                raise
            agent.result.finish_reason, agent.result.error = "error", str(e)
            return
        by_request[agent.request_id] = agent

    def end_turn(agent: _Agent, output: RequestOutput) -> None:
        completion = output.outputs[0]
        parsed = pipeline.reader(agent.prepared).whole(
            completion.text, completion.finish_reason)
        result = agent.result
        result.output, result.content, result.reasoning = output, parsed.content, parsed.reasoning
        completion.content, completion.reasoning = parsed.content, parsed.reasoning
        completion.tool_calls = parsed.tool_calls or None
        turn = {"role": "assistant", "content": parsed.content or ""}
        if parsed.reasoning:
            turn["reasoning"] = parsed.reasoning
        if parsed.tool_calls:
            turn["tool_calls"] = [c.model_dump() for c in parsed.tool_calls]
        result.messages.append(turn)
        if not parsed.tool_calls:
            result.finish_reason = completion.finish_reason or "stop"
            return
        if result.rounds >= max_tool_rounds:
            result.finish_reason = "max_tool_rounds"
            return
        calls = [agent.toolbox.run(c.id, c.function.name, c.function.arguments, pool)
                 for c in parsed.tool_calls]

        async def run_round():
            return await asyncio.gather(*calls)

        agent.future = background.submit(run_round())
        waiting[agent.future] = agent

    try:
        for agent in agents:
            start_turn(agent, first=True)
    except ValueError:
        engine.abort_request(list(by_request))
        raise
    try:
        while by_request or waiting:
            if engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished and output.request_id in by_request:
                        end_turn(by_request.pop(output.request_id), output)
            elif waiting:  # nothing to decode: sleep until some agent's tools are done
                concurrent.futures.wait(list(waiting),
                                        return_when=concurrent.futures.FIRST_COMPLETED)
            elif by_request:  # requests the engine no longer knows (cannot happen)
                break
            for future in [f for f in waiting if f.done()]:
                agent = waiting.pop(future)
                results: list[ToolResult] = future.result()  # run() never raises
                agent.result.tool_results += results
                agent.result.messages += [r.message() for r in results]
                agent.result.rounds += 1
                start_turn(agent, first=False)
    except BaseException:
        engine.abort_request(list(by_request))
        for future in waiting:
            future.cancel()
        raise
    return [agent.result for agent in agents]
