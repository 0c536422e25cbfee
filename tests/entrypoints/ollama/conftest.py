"""Servers for the Ollama API tests: the real app (both APIs) on uvicorn on a free loopback port,
over one tiny random Llama engine, talked to with the real `ollama` client and httpx.

The random model calls no tool by itself and Ollama has no tool_choice. What makes it call
tools here is Ollama's own per-request constraint, `format`: the `xlam_server` reads calls as
a bare JSON list at the start of the output (`--tool-call-parser xlam`), so a JSON Schema
`format` describing that list (`calls_format`) is exactly what the model writes, and the
pipeline reads it back as calls. `hermes_server` reads Hermes calls, and a bare call object
(what small Qwen models drift into) too, so a `format` for one call object makes one call there.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest

from callm.engine.async_engine import AsyncLLMEngine
from callm.entrypoints.openai.api_server import build_app, build_context

_spec = importlib.util.spec_from_file_location(
    "openai_server_helpers", Path(__file__).resolve().parents[1] / "openai" / "conftest.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
serve_app, make_engine, engine_idle = helpers.serve_app, helpers.make_engine, helpers.engine_idle

MODEL = "tiny-llama"
API_KEY = "sk-ollama-secret"
# A ChatML template with no tools block: no tool parser is detected from it.
PLAIN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                  "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@dataclass
class Server:
    url: str
    engine: AsyncLLMEngine
    api_key: str | None = None

    def client(self, **kwargs) -> ollama.Client:
        if self.api_key and "headers" not in kwargs:
            kwargs["headers"] = {"Authorization": f"Bearer {self.api_key}"}
        return ollama.Client(host=self.url, timeout=60, **kwargs)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def idle(self) -> bool:
        return engine_idle(self.engine)


@pytest.fixture(scope="session")
def ollama_engine(tiny_llama_dir):
    engine = make_engine(str(tiny_llama_dir))
    yield engine
    engine.shutdown()


def _serve(engine, *args, api_key=None):
    ctx = build_context(engine, [MODEL], *args)
    return serve_app(build_app(ctx, api_key=api_key))


@pytest.fixture(scope="session")
def hermes_server(ollama_engine):
    """The tiny model under its default template (ChatML + Hermes tools), hermes parser; no
    --enable-auto-tool-choice: Ollama's routes parse calls whenever there is a parser."""
    with _serve(ollama_engine, False, "hermes", None) as url:
        yield Server(url, ollama_engine)


@pytest.fixture(scope="session")
def xlam_server(ollama_engine):
    with _serve(ollama_engine, False, "xlam", None) as url:
        yield Server(url, ollama_engine)


@pytest.fixture(scope="session")
def thinking_server(ollama_engine):
    """A Qwen3-style thinking template (its generation prompt opens `<think>`), the qwen3
    reasoning parser and hermes."""
    from thinking_template import THINKING_TEMPLATE

    with _serve(ollama_engine, False, "hermes", THINKING_TEMPLATE, "qwen3") as url:
        yield Server(url, ollama_engine)


@pytest.fixture(scope="session")
def plain_server(ollama_engine):
    """No tool parser (the template has no tools block), no reasoning parser."""
    with _serve(ollama_engine, False, None, PLAIN_TEMPLATE) as url:
        yield Server(url, ollama_engine)


@pytest.fixture(scope="session")
def auth_server(ollama_engine):
    with _serve(ollama_engine, False, "hermes", None, api_key=API_KEY) as url:
        yield Server(url, ollama_engine, API_KEY)


def call_schema(name: str, **arguments) -> dict:
    """One call object {"name": name, "arguments": {...}} whose argument values are fixed."""
    return {"type": "object", "properties": {
        "name": {"type": "string", "enum": [name]},
        "arguments": {"type": "object",
                      "properties": {k: {"enum": [v]} for k, v in arguments.items()},
                      "required": list(arguments), "additionalProperties": False}},
        "required": ["name", "arguments"], "additionalProperties": False}


def calls_format(*calls: tuple[str, dict]) -> dict:
    """`format` for the xlam server: the JSON list of exactly these calls, in order."""
    return {"type": "array", "prefixItems": [call_schema(name, **args) for name, args in calls],
            "items": False, "minItems": len(calls), "maxItems": len(calls)}
