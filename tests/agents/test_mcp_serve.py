"""`callm serve --mcp-config`: `{"type": "mcp", "server_label": ...}` tools in
/v1/chat/completions are called by the server (a real MCP server process over stdio)."""

import json
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from callm.config import EngineConfig
from callm.engine.async_engine import AsyncLLMEngine
from callm.engine.llm_engine import LLMEngine
from callm.entrypoints.openai.api_server import build_app, build_context

SERVER = str(Path(__file__).with_name("mcp_server.py"))


@pytest.fixture(scope="module")
def served(tiny_llama_dir, tmp_path_factory):
    config = tmp_path_factory.mktemp("mcp-serve") / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"calc": {"command": sys.executable,
                                                          "args": [SERVER]}}}))
    engine = AsyncLLMEngine(LLMEngine(EngineConfig(
        model=str(tiny_llama_dir), dtype="float32", kv_cache_memory=32 * 2**20,
        max_model_len=1024)))
    ctx = build_context(engine, ["tiny"], True, "hermes", None, mcp_config=str(config))
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
    yield f"http://127.0.0.1:{port}/v1", ctx
    server.should_exit = True
    thread.join(timeout=10)
    ctx.mcp.close()
    ctx.mcp.background.close()
    engine.shutdown()


def post(url, **body):
    return httpx.post(f"{url}/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "count"}],
        "temperature": 0, "max_tokens": 32, **body}, timeout=120)


def test_the_server_calls_mcp_tools_then_answers(served):
    url, ctx = served
    before = int(ctx.mcp.call("tallies", {})[0])
    r = post(url, tools=[{"type": "mcp", "server_label": "calc", "allowed_tools": ["tally"]}],
             tool_choice={"type": "function", "function": {"name": "tally"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert int(ctx.mcp.call("tallies", {})[0]) > before  # the server ran the forced call
    assert body["usage"]["total_tokens"] == (body["usage"]["prompt_tokens"]
                                             + body["usage"]["completion_tokens"])
    # the rounds after the tools are "auto": the tiny model answers (or calls again, which the
    # server runs too, up to its round limit)
    assert body["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


def test_mcp_tool_errors_are_400s(served):
    url, _ = served
    r = post(url, tools=[{"type": "mcp", "server_label": "nope"}])
    assert r.status_code == 400 and "nope" in r.text
    r = post(url, tools=[{"type": "mcp", "server_label": "calc"}], stream=True)
    assert r.status_code == 400 and "stream" in r.text
    r = post(url, tools=[{"type": "mcp", "server_label": "calc", "allowed_tools": ["echo"]}],
             tool_choice={"type": "function", "function": {"name": "tally"}})
    assert r.status_code == 400 and "tally" in r.text
