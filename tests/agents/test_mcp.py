"""MCP servers as tools: a real MCP server process (tests/agents/mcp_server.py) over stdio."""

import json
import sys
from pathlib import Path

import pytest

from callm import LLM, SamplingParams

SERVER = str(Path(__file__).with_name("mcp_server.py"))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "servers.json"
    path.write_text(json.dumps({"mcpServers": {
        "calc": {"command": sys.executable, "args": [SERVER]},
        "small": {"command": sys.executable, "args": [SERVER],
                  "env": {"CALLM_TEST_SERVER": "small"}}}}))
    return path


@pytest.fixture(scope="module")
def llm(tiny_llama_dir, config):
    llm = LLM(str(tiny_llama_dir), dtype="float32", max_model_len=2048,
              kv_cache_memory=32 * 2**20, mcp_config=str(config))
    yield llm
    llm.shutdown()


def test_tools_are_listed_from_the_server_processes(llm):
    tools = {t["function"]["name"]: t["function"] for t in llm.mcp.tools()}
    # a name two servers share is prefixed with the server's name; the rest keep their own
    assert set(tools) == {"calc__add", "small__add", "echo", "fail", "crash", "pid", "whoami",
                          "tally", "tallies", "hang", "slow", "big", "busy", "busy_peak"}
    assert tools["echo"]["parameters"]["properties"]["word"]["enum"] == ["hi", "bye"]
    assert tools["calc__add"]["description"] == "Add two integers."


def test_calls_errors_env_and_restart(llm):
    assert llm.mcp.call("calc__add", {"a": 2, "b": 3}) == ("5", False)
    assert llm.mcp.call("whoami", {}) == ("small", False)  # the config's env reached it
    text, is_error = llm.mcp.call("fail", {"reason": "x"})
    assert is_error and "fail" in text
    text, is_error = llm.mcp.call("calc__add", {"a": "two"})
    assert is_error
    before = llm.mcp.call("pid", {})[0]
    text, is_error = llm.mcp.call("crash", {})
    assert is_error  # the server died during the call
    after, is_error = llm.mcp.call("pid", {})  # started again on the next use
    assert not is_error and after != before


def test_the_tool_loop_calls_mcp_tools(llm):
    def local(word: str) -> str:
        """A local tool next to the MCP ones."""
        return word

    results = llm.run_tools(
        [[{"role": "user", "content": "say hi"}], [{"role": "user", "content": "who?"}]],
        tools=[local], sampling_params=SamplingParams(temperature=0, max_tokens=64),
        max_tool_rounds=1, tool_choice=[{"type": "function", "function": {"name": "echo"}},
                                        {"type": "function", "function": {"name": "whoami"}}])
    echo, whoami = results
    call = echo.messages[1]["tool_calls"][0]
    word = json.loads(call["function"]["arguments"])["word"]
    assert echo.messages[2] == {"role": "tool", "tool_call_id": call["id"], "name": "echo",
                                "content": f"echo {word}"}
    assert whoami.messages[2]["content"] == "small"
    assert "local" in llm.tokenizer.decode(echo.output.prompt_token_ids)  # both kinds listed


def test_streamable_http_server():
    import socket
    import subprocess
    import time

    from callm.agents.mcp import MCPServers
    from callm.agents.tool_loop import BackgroundLoop

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, SERVER, "--http", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loop = BackgroundLoop()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.05)
        servers = MCPServers({"mcpServers": {"web": {"url": f"http://127.0.0.1:{port}/mcp"}}},
                             loop)
        assert "echo" in {t["function"]["name"] for t in servers.tools()}
        assert servers.call("add", {"a": 1, "b": 2}) == ("3", False)
        servers.close()
    finally:
        loop.close()
        server.terminate()
        server.wait(10)


def test_a_bad_config_is_a_clear_error(tmp_path):
    from callm.agents.mcp import load_mcp_config

    with pytest.raises(ValueError, match="command"):
        load_mcp_config({"mcpServers": {"x": {"args": []}}})
    with pytest.raises(ValueError, match="cannot read"):
        load_mcp_config(tmp_path / "missing.json")
