"""Shared servers for the OpenAI server tests: the real FastAPI app on uvicorn, on a free loopback
port, in a background thread (started once per session, stopped with `should_exit`), and helpers
to start `callm serve` as a subprocess where the command line itself is under test."""

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from callm.config import EngineConfig
from callm.engine.async_engine import AsyncLLMEngine
from callm.engine.llm_engine import LLMEngine
from callm.entrypoints.openai.api_server import build_app, build_context

TINY_MODEL_NAME = "tiny-llama"
API_KEY = "sk-test-secret"
REPO_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    engine: AsyncLLMEngine
    model: str
    api_key: str | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, **kwargs) -> openai.OpenAI:
        kwargs.setdefault("api_key", self.api_key or "unused")
        return openai.OpenAI(base_url=self.base_url, max_retries=0, timeout=60, **kwargs)

    def async_client(self, **kwargs) -> openai.AsyncOpenAI:
        kwargs.setdefault("api_key", self.api_key or "unused")
        return openai.AsyncOpenAI(base_url=self.base_url, max_retries=0, timeout=60, **kwargs)

    def idle(self) -> bool:
        return engine_idle(self.engine)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until every request has left the engine and all KV blocks are free again."""
        core = self.engine.engine
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if engine_idle(self.engine):
                return
            time.sleep(0.02)
        blocks = core.block_manager
        raise AssertionError(
            f"engine not idle after {timeout}s: {blocks.num_free_blocks}/{blocks.num_blocks} "
            f"blocks free, requests {list(core.groups)}, streams {list(self.engine._streams)}")


def engine_idle(engine: AsyncLLMEngine) -> bool:
    core = engine.engine
    blocks = core.block_manager
    return (blocks.num_free_blocks == blocks.num_blocks and not core.groups
            and not core.has_unfinished_requests() and not engine._streams)


@contextmanager
def serve_app(app):
    """Run `app` on uvicorn in a thread on a free port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def make_engine(model: str, **overrides) -> AsyncLLMEngine:
    args = dict(model=model, dtype="float32", kv_cache_memory=32 * 2**20, max_model_len=512,
                max_num_seqs=32)
    args.update(overrides)
    return AsyncLLMEngine(LLMEngine(EngineConfig(**args)))


@pytest.fixture(scope="session")
def tiny_engine(tiny_llama_dir):
    engine = make_engine(str(tiny_llama_dir))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def server(tiny_engine):
    """The tiny random Llama, no API key, auto tool choice off."""
    ctx = build_context(tiny_engine, [TINY_MODEL_NAME], False, None, None)
    with serve_app(build_app(ctx)) as url:
        yield Server(url, tiny_engine, TINY_MODEL_NAME)


@pytest.fixture(scope="session")
def auth_server(tiny_engine):
    """The same engine behind a second app that requires an API key."""
    ctx = build_context(tiny_engine, [TINY_MODEL_NAME], False, None, None)
    with serve_app(build_app(ctx, api_key=API_KEY)) as url:
        yield Server(url, tiny_engine, TINY_MODEL_NAME, api_key=API_KEY)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return server.client()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


# ----- `callm serve` as a subprocess -----

def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "callm.entrypoints.cli", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


@pytest.fixture(scope="session")
def run_cli():
    """`run_cli(*args)`: run `python -m callm.entrypoints.cli ARGS` from the repository root;
    returns (CompletedProcess, seconds)."""

    def run(*args: str, timeout: float = 120):
        start = time.monotonic()
        done = subprocess.run(cli(*args), cwd=REPO_ROOT, env=cli_env(), capture_output=True,
                              text=True, timeout=timeout)
        return done, time.monotonic() - start

    return run


@contextmanager
def cli_server(model: str, *flags: str, timeout: float = 90):
    """`callm serve MODEL --port P FLAGS...`; yields the base URL once /health answers 200."""
    port = free_port()
    proc = subprocess.Popen(cli("serve", model, "--port", str(port), "--uvicorn-log-level",
                                "warning", *flags),
                            cwd=REPO_ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"callm serve exited with {proc.returncode}:\n"
                                   f"{proc.stdout.read()}")
            if time.monotonic() > deadline:
                raise RuntimeError("callm serve did not become healthy in time")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc, 20)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it outlives `timeout`; close its output pipe."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


# ----- a tool-parser plugin loaded with --tool-parser-plugin -----

ECHO_PLUGIN = '''
import json

from callm.entrypoints.openai.protocol import (DeltaFunctionCall, DeltaMessage, DeltaToolCall,
                                               ExtractedToolCallInformation, FunctionCall,
                                               ToolCall)
from callm.tool_parsers import ToolParser, ToolParserManager


@ToolParserManager.register_module("echo_everything")
class EchoEverythingParser(ToolParser):
    """Whatever the model wrote becomes one call: echo(text=<the whole output>)."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.text = ""

    def extract_tool_calls(self, model_output, request):
        call = ToolCall(function=FunctionCall(name="echo",
                                              arguments=json.dumps({"text": model_output})))
        return ExtractedToolCallInformation(tools_called=True, tool_calls=[call], content=None)

    def extract_tool_calls_streaming(self, previous_text, current_text, delta_text,
                                     previous_token_ids, current_token_ids, delta_token_ids,
                                     request):
        self.text = current_text
        return None

    def finish_streaming(self, request):
        arguments = json.dumps({"text": self.text})
        return DeltaMessage(tool_calls=[DeltaToolCall(
            index=0, id="call_echo0", type="function",
            function=DeltaFunctionCall(name="echo", arguments=arguments))])
'''


@pytest.fixture(scope="module")
def plugin_server(tiny_llama_dir, tmp_path_factory):
    """`callm serve` on the tiny model with the echo plugin as its auto tool-call parser."""
    plugin = tmp_path_factory.mktemp("plugin") / "echo_plugin.py"
    plugin.write_text(ECHO_PLUGIN)
    with cli_server(str(tiny_llama_dir), "--dtype", "float32", "--kv-cache-memory", "32M",
                    "--max-model-len", "512", "--served-model-name", TINY_MODEL_NAME,
                    "--enable-auto-tool-choice", "--tool-call-parser", "echo_everything",
                    "--tool-parser-plugin", str(plugin)) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


# ----- the embedded real model -----

@contextmanager
def real_model_server(model: str, **engine_overrides):
    """A real model (bf16) with Hermes tool parsing behind the app, in process; yields a client."""
    engine = make_engine(model, **{"dtype": "bfloat16", "max_model_len": 2048,
                                   "kv_cache_memory": 64 * 2**20, **engine_overrides})
    ctx = build_context(engine, None, True, "hermes", None)
    try:
        with serve_app(build_app(ctx)) as url:
            yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                                timeout=300)
    finally:
        engine.shutdown()


@pytest.fixture(scope="module")
def smollm():
    """SmolLM2-135M-Instruct (bf16) with Hermes tool parsing, in process."""
    with real_model_server("smollm2-135m-instruct") as client:
        yield client


@pytest.fixture(scope="module")
def qwen():
    """Qwen2.5-Coder-0.5B-Instruct, the model that calls tools on its own (slow tests only)."""
    with real_model_server("qwen2.5-coder-0.5b-instruct", kv_cache_memory=128 * 2**20) as client:
        yield client
