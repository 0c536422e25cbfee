"""Pydantic wire types of Ollama's native API (/api/chat, /api/generate, /api/show), as the
`ollama` Python client (0.6) sends them.

Requests ignore unknown fields, as Ollama does. Responses are plain dicts built in
`serving.py`: Ollama's replies leave out what is unset, and the client reads them by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

THINK_LEVELS = ("low", "medium", "high")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(BaseModel):
    """`options`: the runtime options callm honours. Ollama's load-time options (num_gpu,
    num_thread, use_mmap, ...) and the samplers callm lacks (mirostat, tfs_z, typical_p,
    repeat_last_n, ...) are accepted and ignored, as Ollama ignores options it does not know."""
    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(default=None, ge=0.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = None  # <= 0: no top-k
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None
    num_predict: int | None = None  # <= 0 (Ollama's -1 and -2): until the context is full
    stop: str | list[str] | None = None
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    num_ctx: int | None = Field(default=None, gt=0)  # this request's context window


class ToolCallFunction(_Request):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)  # an object; JSON text too
    index: int | None = None


class ToolCall(_Request):
    id: str | None = None
    function: ToolCallFunction


class Message(_Request):
    role: str
    content: str | None = None
    thinking: str | None = None
    images: list[Any] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None  # a tool result: the function that produced it
    tool_call_id: str | None = None  # a tool result: the call it answers (if the client knows)


Format = str | dict[str, Any] | None  # "", "json" or a JSON Schema


class _GenerateCommon(_Request):
    model: str = ""
    stream: bool = True
    format: Format = None
    options: Options | None = None
    think: bool | str | None = None
    keep_alive: float | str | None = None  # accepted; callm keeps its one model loaded
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class ChatRequest(_GenerateCommon):
    """Body of POST /api/chat."""
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(_GenerateCommon):
    """Body of POST /api/generate."""
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None  # a previous response's `context`: the conversation so far
    raw: bool = False  # the prompt as it is, no chat template
    images: list[Any] | None = None


class ShowRequest(_Request):
    """Body of POST /api/show (`name` is the older spelling of `model`)."""
    model: str = ""
    name: str = ""
    verbose: bool = False
