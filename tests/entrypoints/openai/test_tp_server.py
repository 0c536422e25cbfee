"""The server over 2 tensor-parallel ranks: `callm serve --tensor-parallel-size 2
--distributed-executor-backend ray` (starting its own local Ray) answers a chat request with tools
through the real openai client; a killed worker turns /health into 503 and requests into 5xx
JSON errors instead of hangs; stopping the server leaves no Ray or worker processes. The same
fault path with the `mp` executor runs on an in-process server."""

import os
import signal
import subprocess
import time

import httpx
import openai
import psutil
import pytest
from conftest import (REPO_ROOT, cli, cli_env, free_port, make_engine, serve_app,
                      stop_process)

from callm.entrypoints.openai.api_server import build_app, build_context

pytestmark = pytest.mark.timeout(300)

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def assert_server_error(call) -> openai.APIStatusError:
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        call()
    assert time.monotonic() - start < 30
    assert info.value.status_code >= 500
    assert info.value.body["type"] == "server_error"  # OpenAI's error JSON
    return info.value


def test_ray_server_tool_call_then_worker_death(tiny_llama_dir):
    port = free_port()
    env = cli_env()
    env.pop("RAY_ADDRESS", None)  # start a local Ray, as a laptop user would
    proc = subprocess.Popen(
        cli("serve", str(tiny_llama_dir), "--port", str(port), "--uvicorn-log-level", "warning",
            "--dtype", "float32", "--kv-cache-memory", "16M", "--max-model-len", "512",
            "--tensor-parallel-size", "2", "--distributed-executor-backend", "ray",
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    spawned: list[psutil.Process] = []
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"callm serve exited:\n{proc.stdout.read()}")
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 120, "the server to become healthy")
        spawned = descendants(proc.pid)  # Ray's processes and the two rank actors
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                               timeout=60)
        response = client.chat.completions.create(
            model=str(tiny_llama_dir), messages=ASK, tools=TOOLS, max_tokens=16,
            temperature=0, extra_body={"ignore_eos": True})
        choice = response.choices[0]
        assert choice.finish_reason in ("length", "tool_calls", "stop")
        assert choice.message.role == "assistant"
        assert choice.message.content or choice.message.tool_calls
        assert response.usage.completion_tokens == 16

        actors = [p for p in spawned if "RankWorker" in _name(p)]
        assert len(actors) == 2, [_name(p) for p in spawned]
        os.kill(actors[1].pid, signal.SIGKILL)
        wait_for(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 503, 30,
                 "/health to report the dead worker")
        body = httpx.get(f"{url}/health", timeout=5).json()
        assert "died" in body["error"]["message"]
        assert_server_error(lambda: client.chat.completions.create(
            model=str(tiny_llama_dir), messages=ASK, tools=TOOLS, max_tokens=4))
    finally:
        stop_process(proc, 60)
    # uvicorn re-raises the SIGTERM after its graceful shutdown; Ray's handler turns it into exit
    # code 15, after the engine's shutdown ran
    assert proc.returncode in (0, 15, -signal.SIGTERM)
    # Ray (started by the server) and its workers went with it
    wait_for(lambda: not [p for p in spawned if _alive(p)], 30, "Ray's processes to exit")


def test_mp_server_worker_death(tiny_llama_dir):
    engine = make_engine(str(tiny_llama_dir), tensor_parallel_size=2,
                         distributed_executor_backend="mp")
    pids = engine.engine.executor.worker_pids
    try:
        ctx = build_context(engine, ["tiny"], True, "hermes", None)
        with serve_app(build_app(ctx)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                                   timeout=60)
            ok = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=4)
            assert ok.choices[0].message.content is not None
            # a long streamed request is running when rank 0 dies
            stream = client.chat.completions.create(
                model="tiny", messages=ASK, max_tokens=400, stream=True,
                extra_body={"ignore_eos": True})
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            os.kill(pids[0], signal.SIGKILL)
            start = time.monotonic()
            with pytest.raises(openai.APIError, match="rank 0 .* died"):  # an error event
                for _ in stream:
                    pass
            assert time.monotonic() - start < 30
            assert httpx.get(f"{url}/health", timeout=5).status_code == 503
            assert_server_error(lambda: client.chat.completions.create(
                model="tiny", messages=ASK, max_tokens=4))
    finally:
        engine.shutdown()
    wait_for(lambda: not [p for p in pids if psutil.pid_exists(p) and _alive(psutil.Process(p))],
             15, "the workers to exit")


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
