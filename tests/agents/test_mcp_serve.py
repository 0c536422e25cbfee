"""`callm serve --mcp-config`: `{"type": "mcp", "server_label": ...}` tools in
/v1/chat/completions are called by the server (a real MCP server process over stdio), through
the real app on uvicorn and the real `openai` client. The tiny random model calls a tool only
when forced, so the first turn names the tool; later turns are "auto" and it answers."""

import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from callm.agents.tools import ToolLimits
from callm.config import EngineConfig
from callm.engine.async_engine import AsyncLLMEngine
from callm.engine.llm_engine import LLMEngine
from callm.entrypoints.openai.api_server import build_app, build_context

SERVER = str(Path(__file__).with_name("mcp_server.py"))
TIMEOUT_S = 1.5  # the served tool timeout: `hang` and `slow` run past it
MAX_RESULT = 200
MAX_CONCURRENT = 2
MAX_ROUNDS = 3


@pytest.fixture(scope="module")
def served(tiny_llama_dir, tmp_path_factory):
    config = tmp_path_factory.mktemp("mcp-serve") / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"calc": {"command": sys.executable,
                                                          "args": [SERVER]}}}))
    engine = AsyncLLMEngine(LLMEngine(EngineConfig(
        model=str(tiny_llama_dir), dtype="float32", kv_cache_memory=32 * 2**20,
        max_model_len=2048)))
    limits = ToolLimits(timeout=TIMEOUT_S, max_concurrent_calls=MAX_CONCURRENT,
                        max_result_chars=MAX_RESULT)
    ctx = build_context(engine, ["tiny"], True, "hermes", None, mcp_config=str(config),
                        tool_limits=limits, max_tool_rounds=MAX_ROUNDS)
    app = build_app(ctx)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port, ctx=ctx, engine=engine,
                          client=openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1",
                                               api_key="unused", max_retries=0, timeout=60))
    server.should_exit = True
    thread.join(timeout=10)
    ctx.mcp.close()
    ctx.mcp.background.close()
    engine.shutdown()


def mcp(*allowed: str) -> dict:
    return {"type": "mcp", "server_label": "calc", "allowed_tools": list(allowed)}


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


LOCAL = {"type": "function", "function": {"name": "local", "parameters": {
    "type": "object", "properties": {"word": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["word"]}}}


def ask(served, tool: str, stream: bool = False, tools=None, **extra):
    """A chat completion forcing `tool` (an MCP tool unless `tools` says otherwise)."""
    return served.client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "go"}], temperature=0,
        max_tokens=64, tools=tools or [mcp(tool)], tool_choice=named(tool), stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
        extra_body=extra or None)


def executed(response) -> list[dict]:
    """The extension field as the openai client keeps it (attribute and model_extra agree)."""
    records = response.executed_tool_calls
    assert records == response.model_extra["executed_tool_calls"]
    return records


def collect(stream) -> dict:
    """A stream reassembled: content, tool calls, finish reason, usage, executed calls."""
    out = {"content": "", "calls": [], "finish": None, "usage": None, "executed": [],
           "chunks": 0}
    for chunk in stream:
        out["chunks"] += 1
        out["executed"] += (chunk.model_extra or {}).get("executed_tool_calls") or []
        if chunk.usage is not None:
            out["usage"] = chunk.usage
        for choice in chunk.choices:
            out["content"] += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                if tc.index == len(out["calls"]):
                    out["calls"].append([tc.function.name, tc.function.arguments or ""])
                else:
                    out["calls"][tc.index][1] += tc.function.arguments or ""
            out["finish"] = choice.finish_reason or out["finish"]
    return out


def scrape(served) -> dict:
    text = httpx.get(f"{served.url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def idle(engine) -> bool:
    core = engine.engine
    blocks = core.block_manager
    return (blocks.num_free_blocks == blocks.num_blocks and not core.groups
            and not core.has_unfinished_requests() and not engine._streams)


def wait_idle(engine, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not idle(engine):
        assert time.monotonic() < deadline, "the engine still holds requests or KV blocks"
        time.sleep(0.02)


# --------------------------------------------------------------------------- the loop

def test_the_server_runs_the_call_then_the_model_answers(served):
    before = int(served.ctx.mcp.call("tallies", {})[0])
    r = ask(served, "tally", max_tool_rounds=1)
    records = executed(r)
    assert int(served.ctx.mcp.call("tallies", {})[0]) == before + len(records) >= before + 1
    for record in records:
        assert record["server_label"] == "calc" and record["name"] == "tally"
        assert record["round"] == 1 and not record["is_error"]
        assert record["output"].startswith("tally ") and record["latency_ms"] > 0
        assert json.loads(record["arguments"])["word"] in ("a", "b")
    # one round, then the model was asked for an answer (tool_choice "none" after the last)
    choice = r.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens > 2 * 100  # two rounds' prompts


def test_streamed_equals_whole(served):
    whole = ask(served, "echo")
    streamed = collect(ask(served, "echo", stream=True))
    keys = ("round", "server_label", "name", "arguments", "output", "is_error")
    assert [{k: r[k] for k in keys} for r in streamed["executed"]] == \
        [{k: r[k] for k in keys} for r in executed(whole)]
    assert streamed["executed"][0]["output"] in ("echo hi", "echo bye")
    assert streamed["content"] == (whole.choices[0].message.content or "")
    assert streamed["finish"] == whole.choices[0].finish_reason
    assert streamed["calls"] == []  # the MCP calls were run, never sent as tool_calls
    assert streamed["usage"].total_tokens == whole.usage.total_tokens


def test_a_client_function_call_goes_back_to_the_client(served):
    tools = [mcp("echo"), LOCAL]
    r = ask(served, "local", tools=tools)
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "local" and json.loads(call.function.arguments)["word"]
    assert executed(r) == []
    s = collect(ask(served, "local", tools=tools, stream=True))
    assert s["calls"] == [["local", call.function.arguments]] and s["executed"] == []
    assert s["finish"] == r.choices[0].finish_reason


# --------------------------------------------------------------------------- faults

def test_a_tool_that_raises_is_an_error_result(served):
    [record] = executed(ask(served, "fail", max_tool_rounds=1))
    assert record["is_error"] and "fail" in record["output"]


def test_a_hanging_tool_times_out(served):
    start = time.monotonic()
    [record] = executed(ask(served, "hang", max_tool_rounds=1))
    assert record["is_error"] and f"timed out after {TIMEOUT_S:g} s" in record["output"]
    assert TIMEOUT_S * 1000 <= record["latency_ms"] < TIMEOUT_S * 1000 + 1000
    assert time.monotonic() - start < 30
    assert executed(ask(served, "echo"))[0]["output"].startswith("echo ")  # session still fine


def test_a_long_result_is_cut(served):
    [record] = executed(ask(served, "big"))
    assert not record["is_error"]
    assert record["output"].startswith("x" * MAX_RESULT)
    assert "x" * (MAX_RESULT + 1) not in record["output"]
    assert f"{MAX_RESULT} of 5000 characters" in record["output"]


def test_a_server_killed_mid_call_is_an_error_result_and_restarts(served):
    pid = int(served.ctx.mcp.call("pid", {})[0])
    rounds = metric(scrape(served), "callm:tool_rounds_total")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask, served, "hang")
        wait_for_round(served, rounds)
        time.sleep(0.2)  # the call has reached the server
        os.kill(pid, signal.SIGKILL)
        [record] = executed(pending.result(timeout=60))
    assert record["is_error"] and "timed out" not in record["output"]
    assert int(served.ctx.mcp.call("pid", {})[0]) != pid  # started again on next use
    assert executed(ask(served, "crash"))[0]["is_error"]  # the tool kills it itself
    assert executed(ask(served, "echo"))[0]["output"].startswith("echo ")


def test_concurrent_calls_are_capped_server_wide(served):
    served.ctx.mcp.call("busy_peak", {})  # reset
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: ask(served, "busy"), range(3)))
    assert all(not r["is_error"] for resp in responses for r in executed(resp))
    assert 1 <= int(served.ctx.mcp.call("busy_peak", {})[0]) <= MAX_CONCURRENT


def test_the_cap_offline_lets_uncapped_calls_overlap():
    """The same `busy` calls without a cap do run at once (so the cap above is what held them)."""
    import asyncio

    from callm.agents.mcp import MCPServers
    from callm.agents.tool_loop import BackgroundLoop
    from callm.agents.tools import ToolBox

    loop = BackgroundLoop()
    try:
        for cap, most in ((None, 4), (2, 2)):
            limits = ToolLimits(max_concurrent_calls=cap)
            servers = MCPServers({"mcpServers": {"calc": {"command": sys.executable,
                                                          "args": [SERVER]}}}, loop,
                                 limits=limits)
            box = ToolBox(extra=servers.runners(), limits=limits)

            async def four():
                return await asyncio.gather(*(box.run(str(i), "busy", "{}") for i in range(4)))

            assert [r.content for r in loop.run(four())] == ["done"] * 4
            peak = int(servers.call("busy_peak", {})[0])
            servers.close()
            assert peak == most if cap is None else 1 <= peak <= most
    finally:
        loop.close()


# --------------------------------------------------------------------------- disconnects

def wait_for_round(served, rounds_before: float, timeout: float = 30) -> None:
    """Until the server has started a round of tools after `rounds_before`."""
    deadline = time.monotonic() + timeout
    while metric(scrape(served), "callm:tool_rounds_total") <= rounds_before:
        assert time.monotonic() < deadline, "no round of tools started"
        time.sleep(0.02)


def raw_request(served, body: dict) -> socket.socket:
    data = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "go"}],
                       "temperature": 0, **body}).encode()
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return sock


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_leaving_during_the_tools_stops_the_loop(served, stream):
    wait_idle(served.engine)
    before = scrape(served)
    sock = raw_request(served, {"tools": [mcp("slow")], "tool_choice": named("slow"),
                                "max_tokens": 64, "stream": stream})
    wait_for_round(served, metric(before, "callm:tool_rounds_total"))
    sock.close()  # while `slow` runs (it takes 2 s, past nothing else)
    time.sleep(TIMEOUT_S + 0.5)  # past when the call would have ended (timed out)
    wait_idle(served.engine)
    after = scrape(served)
    # the call was cancelled, never recorded; no second round was generated
    assert metric(after, "callm:tool_calls_executed_total", tool="slow") == \
        metric(before, "callm:tool_calls_executed_total", tool="slow")
    assert metric(after, "callm:request_success_total") == \
        metric(before, "callm:request_success_total") + 1
    assert executed(ask(served, "echo"))[0]["output"].startswith("echo ")  # still serving


def test_a_client_leaving_mid_generation_frees_the_kv_blocks(served):
    wait_idle(served.engine)
    before = scrape(served)
    sock = raw_request(served, {"tools": [mcp("echo")], "tool_choice": "auto",
                                "max_tokens": 450, "ignore_eos": True, "stream": True})
    seen = b""
    while seen.count(b"data: ") < 3:
        seen += sock.recv(4096)
    assert not idle(served.engine)
    sock.close()
    wait_idle(served.engine)
    after = scrape(served)
    assert metric(after, "callm:request_success_total", finished_reason="length") == \
        metric(before, "callm:request_success_total", finished_reason="length")


# --------------------------------------------------------------------------- limits, metrics

def test_max_tool_rounds_is_validated(served):
    for bad in (0, -1, "two", MAX_ROUNDS + 1):
        with pytest.raises(openai.BadRequestError) as e:
            ask(served, "echo", max_tool_rounds=bad)
        assert e.value.status_code == 400 and "max_tool_rounds" in str(e.value)
    assert executed(ask(served, "echo", max_tool_rounds=MAX_ROUNDS))


def test_the_last_round_is_followed_by_a_forced_answer(served):
    from callm.agents.server_loop import _Loop
    from callm.entrypoints.openai.protocol import ChatCompletionRequest, ToolCall
    from callm.agents.tools import ToolResult

    request = ChatCompletionRequest(messages=[{"role": "user", "content": "go"}],
                                    tools=[mcp("echo")], max_tool_rounds=2)
    loop = _Loop(SimpleNamespace(ctx=served.ctx), request, None)
    call = ToolCall(id="c1", function={"name": "echo", "arguments": '{"word": "hi"}'})
    loop.results = {"c1": ToolResult("c1", "echo", "echo hi")}
    choices = []
    for _ in range(2):
        assert loop.runs([call], "stop") and not loop.runs([call], "length")
        loop.rounds += 1
        choices.append(loop.next_request("", None, [call]).tool_choice)
    assert choices == ["auto", "none"] and not loop.runs([call], "stop")
    messages = loop.next_request("", None, [call]).messages
    assert messages[-1].role == "tool" and messages[-1].content == "echo hi"


def test_errors_before_the_loop_are_400s(served):
    url = served.url + "/v1/chat/completions"
    body = {"model": "tiny", "messages": [{"role": "user", "content": "count"}]}
    r = httpx.post(url, json={**body, "tools": [{"type": "mcp", "server_label": "nope"}]})
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
    r = httpx.post(url, json={**body, "tools": [mcp("echo")], "tool_choice": named("tally")})
    assert r.status_code == 400 and "tally" in r.text
    r = httpx.post(url, json={**body, "tools": [mcp("echo")], "n": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    r = httpx.post(url, json={**body, "tools": [mcp("echo")], "stream": True,
                              "max_tool_rounds": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tool_rounds"


def test_metrics_count_rounds_calls_latency_and_failures(served):
    before = scrape(served)
    ask(served, "fail", max_tool_rounds=1)
    ask(served, "echo", max_tool_rounds=1)
    after = scrape(served)

    def grew(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    labels = {"model_name": "tiny", "server": "calc"}
    assert grew("callm:tool_rounds_total") == 2
    assert grew("callm:tool_calls_executed_total", tool="fail", **labels) == 1
    assert grew("callm:tool_call_failures_total", tool="fail", **labels) == 1
    assert grew("callm:tool_calls_executed_total", tool="echo", **labels) == 1
    assert grew("callm:tool_call_failures_total", tool="echo", **labels) == 0
    assert grew("callm:tool_call_latency_seconds_count", tool="echo", **labels) == 1
    assert grew("callm:tool_call_latency_seconds_sum", tool="echo", **labels) > 0


def test_the_mcp_example(served, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "openai_mcp_tools.py"
    spec = importlib.util.spec_from_file_location("openai_mcp_tools", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    whole, streamed, answer = module.main(f"{served.url}/v1", tool="echo", max_tokens=64)
    assert executed(whole) and all(r["name"] == "echo" for r in streamed)
    assert [r["output"] for r in streamed] == [r["output"] for r in executed(whole)]
    assert answer == (whole.choices[0].message.content or "")
    assert "ran calc.echo(" in capsys.readouterr().out
