"""Pydantic wire types of the OpenAI chat/completions API.

Requests ignore unknown fields, as OpenAI-compatible servers do, so newer clients keep working.
Responses are meant to be sent with ``model_dump_json()`` (no flags): then a response or a streamed
chunk has the shape OpenAI sends. Delta models leave out what is unset, because a delta carries
only what changed; messages leave out an empty ``tool_calls``, as OpenAI does.
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler,
                      ValidationInfo, field_validator, model_serializer)

_ALNUM = string.ascii_letters + string.digits


def _random_id(length: int) -> str:
    # `secrets`, not `random`: a user-seeded global RNG must not make ids collide.
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def random_tool_call_id() -> str:
    """An OpenAI-style tool call id: ``call_`` and 24 random letters and digits."""
    return "call_" + _random_id(24)


# --------------------------------------------------------------------------- tool calls (contract)

class FunctionCall(BaseModel):
    """A called function; ``arguments`` is JSON text, as the model wrote it (may be invalid)."""
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str = Field(default_factory=random_tool_call_id)
    type: Literal["function"] = "function"
    function: FunctionCall


class _Delta(BaseModel):
    """Dumps without None fields or empty lists: a streamed delta says only what changed."""

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler):
        return {k: v for k, v in handler(self).items() if v is not None and v != []}


class DeltaFunctionCall(_Delta):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_Delta):
    """One fragment of call ``index``: the first carries id, type and name; later ones arguments."""
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunctionCall | None = None


class DeltaMessage(_Delta):
    """A streamed piece of the reply. The thought goes out as both `reasoning` (vLLM's newer
    name) and `reasoning_content`, so clients reading either see it."""
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[DeltaToolCall] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _with_reasoning(self, handler: SerializerFunctionWrapHandler):
        data = {k: v for k, v in handler(self).items() if v is not None and v != []}
        if "reasoning_content" in data:
            data["reasoning"] = data["reasoning_content"]
        return data


class ExtractedToolCallInformation(BaseModel):
    """What a tool parser found in a whole output; ``content`` is the text outside the calls."""
    tools_called: bool
    tool_calls: list[ToolCall]
    content: str | None = None


# --------------------------------------------------------------------------- request messages

class TextContentPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ImageURL(BaseModel):
    url: str  # http(s) or data: URL
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLContentPart(BaseModel):
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class InputAudio(BaseModel):
    data: str  # base64
    format: Literal["wav", "mp3"]


class InputAudioContentPart(BaseModel):
    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class RefusalContentPart(BaseModel):
    type: Literal["refusal"] = "refusal"
    refusal: str


UserContentPart = Annotated[TextContentPart | ImageURLContentPart | InputAudioContentPart,
                            Field(discriminator="type")]
AssistantContentPart = Annotated[TextContentPart | RefusalContentPart, Field(discriminator="type")]


class _Message(BaseModel):
    # Extra keys survive: some chat templates read fields OpenAI does not define.
    model_config = ConfigDict(extra="allow")


class SystemMessage(_Message):
    role: Literal["system"]
    content: str | list[TextContentPart]
    name: str | None = None


class DeveloperMessage(_Message):
    """OpenAI's newer name for a system message."""
    role: Literal["developer"]
    content: str | list[TextContentPart]
    name: str | None = None


class UserMessage(_Message):
    role: Literal["user"]
    content: str | list[UserContentPart]
    name: str | None = None


class AssistantMessage(_Message):
    """An earlier assistant turn; ``content`` is None when the turn only called tools."""
    role: Literal["assistant"]
    content: str | list[AssistantContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # vLLM's newer name for the same thought
    refusal: str | None = None
    name: str | None = None
    function_call: FunctionCall | None = None  # legacy, pre-tools API


class ToolMessage(_Message):
    role: Literal["tool"]
    content: str | list[TextContentPart]
    tool_call_id: str


class FunctionMessage(_Message):
    """Legacy result of a ``function_call``; ``tool`` messages replaced it."""
    role: Literal["function"]
    name: str
    content: str | None = None


ChatMessageParam = Annotated[SystemMessage | DeveloperMessage | UserMessage | AssistantMessage
                             | ToolMessage | FunctionMessage, Field(discriminator="role")]


# --------------------------------------------------------------------------- tools, formats

class FunctionDefinition(BaseModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments object
    strict: bool | None = None                # arguments must match `parameters` exactly


class ChatCompletionToolsParam(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class McpToolParam(BaseModel):
    """`{"type": "mcp", "server_label": NAME}`: every tool of the MCP server NAME of the
    server's `--mcp-config` (or only `allowed_tools`), called by the server itself: the
    response is the model's answer after the calls' results (`callm.agents.server_loop`)."""
    type: Literal["mcp"]
    server_label: str
    allowed_tools: list[str] | None = None
    server_url: str | None = None        # accepted; servers come from --mcp-config only
    require_approval: Any = None         # accepted, unused: the server never asks


class ChatCompletionNamedFunction(BaseModel):
    name: str


class ChatCompletionNamedToolChoiceParam(BaseModel):
    """``tool_choice`` that forces one particular function."""
    type: Literal["function"] = "function"
    function: ChatCompletionNamedFunction


ToolChoice = Literal["none", "auto", "required"] | ChatCompletionNamedToolChoiceParam


class ResponseFormatText(BaseModel):
    type: Literal["text"]


class ResponseFormatJSONObject(BaseModel):
    type: Literal["json_object"]


class JSONSchema(BaseModel):
    """Field ``json_schema`` is ``schema`` on the wire (the name would shadow a BaseModel method);
    dump with ``by_alias=True`` to get the wire form back."""
    name: str
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatJSONSchema(BaseModel):
    type: Literal["json_schema"]
    json_schema: JSONSchema


ResponseFormat = Annotated[ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema,
                           Field(discriminator="type")]


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` extension: one constraint on the whole output — ``json``
    (a JSON Schema), ``json_object``, ``regex``, ``choice``, ``grammar`` (Lark, or EBNF with
    ``::=``) or ``structural_tag`` — and/or the grammar ``backend`` for this request."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    json_: dict[str, Any] | bool | str | None = Field(default=None, alias="json")
    json_object: bool | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    structural_tag: dict[str, Any] | str | None = None
    backend: Literal["xgrammar", "llguidance", "outlines"] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False           # one last chunk with usage and no choices
    continuous_usage_stats: bool = False  # usage on every chunk (vLLM extension)


# --------------------------------------------------------------------------- requests

Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class _SamplingRequest(BaseModel):
    """Fields shared by chat and completion requests. None leaves the choice to the engine
    (and the model's generation config)."""
    model_config = ConfigDict(extra="ignore")

    model: str | None = None  # the server fills in the one it serves
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    logit_bias: dict[int, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    user: str | None = None
    echo: bool = False  # prepend the prompt (completions) or last message (chat) to the output
    # vLLM-style extensions
    top_k: int | None = Field(default=None, ge=-1)  # -1 or 0 disables
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    structured_outputs: StructuredOutputs | None = None
    response_format: ResponseFormat | None = None  # OpenAI's for chat; vLLM's for completions


class ChatCompletionRequest(_SamplingRequest):
    """Body of ``POST /v1/chat/completions``. After validation ``tool_choice`` is never None:
    it defaults to "auto" when tools are given and "none" otherwise."""
    messages: list[ChatMessageParam] = Field(min_length=1)
    tools: list[ChatCompletionToolsParam | McpToolParam] | None = None
    tool_choice: ToolChoice | None = Field(default=None, validate_default=True)
    parallel_tool_calls: bool = True
    max_tokens: int | None = Field(default=None, ge=1)  # deprecated by OpenAI, still common
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    metadata: dict[str, str] | None = None  # accepted, unused
    store: bool | None = None               # accepted, unused
    # chat template controls (vLLM-style)
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    # reasoning models: passed to the template (gpt-oss: low / medium / high), and a cap on
    # thinking tokens after which the family's end-of-thought marker is written
    reasoning_effort: str | None = None
    thinking_token_budget: int | None = Field(default=None, ge=0)
    # `{"type": "mcp"}` tools (callm extension): rounds of tools the server may run before it
    # asks for the answer; None: the server's --max-tool-rounds, which is also the most allowed
    max_tool_rounds: int | None = Field(default=None, ge=1)

    @field_validator("tools")
    @classmethod
    def _tools_not_empty(cls, tools: list[ChatCompletionToolsParam] | None):
        if tools is not None and not tools:
            raise ValueError("tools must not be empty; omit it")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _resolve_tool_choice(cls, choice: ToolChoice | None, info: ValidationInfo):
        if "tools" not in info.data:  # tools itself failed validation; that error is enough
            return choice
        tools = info.data["tools"] or []
        if any(t.type == "mcp" for t in tools):  # its functions are known once listed
            return "auto" if choice is None else choice
        names = [t.function.name for t in tools]
        if choice is None or (choice == "auto" and not names):
            return "auto" if names else "none"  # no tools: nothing to call, say so plainly
        if choice == "none":
            return choice
        if not names:
            shown = choice if isinstance(choice, str) else "a named function"
            raise ValueError(f"tool_choice {shown!r} needs tools, but no tools were given")
        named = isinstance(choice, ChatCompletionNamedToolChoiceParam) and choice.function.name
        if named and named not in names:
            raise ValueError(f"tool_choice names function {named!r}, "
                             f"which is not in tools ({', '.join(names)})")
        return choice

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_needs_logprobs(cls, top: int | None, info: ValidationInfo):
        if top is not None and not info.data.get("logprobs", True):
            raise ValueError("top_logprobs requires logprobs=true")
        return top

    @field_validator("continue_final_message")
    @classmethod
    def _continue_or_generate(cls, cont: bool, info: ValidationInfo):
        if cont and info.data.get("add_generation_prompt"):
            raise ValueError("continue_final_message=true needs add_generation_prompt=false")
        return cont

    def effective_max_tokens(self) -> int | None:
        """The output length limit: ``max_completion_tokens`` wins over the older ``max_tokens``."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def tool_names(self) -> list[str]:
        return [t.function.name for t in self.tools or [] if t.type == "function"]


class CompletionRequest(_SamplingRequest):
    """Body of ``POST /v1/completions`` (legacy text completion)."""
    prompt: str | list[str] | list[int] | list[list[int]]  # text(s) or token id list(s)
    max_tokens: int | None = Field(default=16, ge=0)  # OpenAI's default; 0 + echo scores a prompt
    logprobs: int | None = Field(default=None, ge=0, le=5)  # how many top tokens per position
    suffix: str | None = None  # accepted; the server may refuse it

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, prompt):
        if isinstance(prompt, list) and not prompt:
            raise ValueError("prompt must not be empty")
        return prompt

    def effective_max_tokens(self) -> int | None:
        return self.max_tokens


# --------------------------------------------------------------------------- responses

ChatFinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
CompletionFinishReason = Literal["stop", "length", "content_filter"]


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletionTopLogProb(BaseModel):
    token: str
    logprob: float = -9999.0
    bytes: list[int] | None = None

    @field_validator("logprob")
    @classmethod
    def _finite(cls, lp: float) -> float:
        # JSON has no -inf/NaN; OpenAI reports impossible tokens as -9999.
        return lp if lp == lp and lp > -9999.0 else -9999.0


class ChatCompletionLogProb(ChatCompletionTopLogProb):
    """One sampled token with the most likely alternatives at its position."""
    top_logprobs: list[ChatCompletionTopLogProb] = Field(default_factory=list)


class ChatCompletionLogProbs(BaseModel):
    content: list[ChatCompletionLogProb] | None = None


class ChatMessage(BaseModel):
    """The assistant's reply in a non-streamed response; ``content`` is None when it only
    called tools."""
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    reasoning_content: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unused(self, handler: SerializerFunctionWrapHandler):
        # Like OpenAI: no "tool_calls": [] on a plain answer, but "content": null stays.
        data = handler(self)
        if not data.get("tool_calls"):
            data.pop("tool_calls", None)
        if data.get("reasoning_content") is None:
            data.pop("reasoning_content", None)
        else:
            data["reasoning"] = data["reasoning_content"]
        return data


class ChatCompletionResponseChoice(BaseModel):
    index: int
    message: ChatMessage
    logprobs: ChatCompletionLogProbs | None = None
    finish_reason: ChatFinishReason | None


class ExecutedToolCall(BaseModel):
    """One call of an MCP tool that the server ran itself (callm extension): `name` is the
    function the model called, `arguments` its JSON text, `output` what the model was given
    (an error text when `is_error`), `round` counts from 1."""
    id: str
    round: int
    server_label: str
    name: str
    arguments: str
    output: str
    is_error: bool
    latency_ms: float


def _omit_executed_if_none(data: dict) -> dict:
    if data.get("executed_tool_calls") is None:
        data.pop("executed_tool_calls", None)
    return data


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: "chatcmpl-" + _random_id(29))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionResponseChoice]
    usage: UsageInfo
    # with `{"type": "mcp"}` tools: every call the server ran, in order (callm extension)
    executed_tool_calls: list[ExecutedToolCall] | None = None

    @model_serializer(mode="wrap")
    def _omit_unused(self, handler: SerializerFunctionWrapHandler):
        return _omit_executed_if_none(handler(self))


class ChatCompletionResponseStreamChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatCompletionLogProbs | None = None
    finish_reason: ChatFinishReason | None = None


class ChatCompletionStreamResponse(BaseModel):
    """One SSE chunk; every chunk of a stream repeats the same ``id``, ``created`` and ``model``."""
    id: str = Field(default_factory=lambda: "chatcmpl-" + _random_id(29))
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionResponseStreamChoice]
    usage: UsageInfo | None = None  # last chunk only, with stream_options.include_usage
    # with `{"type": "mcp"}` tools: the calls the server just ran (callm extension)
    executed_tool_calls: list[ExecutedToolCall] | None = None

    @model_serializer(mode="wrap")
    def _omit_unused(self, handler: SerializerFunctionWrapHandler):
        return _omit_executed_if_none(handler(self))


class CompletionLogProbs(BaseModel):
    """Legacy completions logprobs: parallel lists, one entry per token."""
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionResponseChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogProbs | None = None
    finish_reason: CompletionFinishReason | None = None


CompletionResponseStreamChoice = CompletionResponseChoice  # OpenAI uses the same shape


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: "cmpl-" + _random_id(29))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionResponseChoice]
    usage: UsageInfo


class CompletionStreamResponse(BaseModel):
    id: str = Field(default_factory=lambda: "cmpl-" + _random_id(29))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionResponseStreamChoice]
    usage: UsageInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "callm"
    root: str | None = None           # what the model was loaded from (path or alias)
    max_model_len: int | None = None  # context length, for clients that size prompts


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(default_factory=list)


class ErrorInfo(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None        # the offending request field, when there is one
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body, ``{"error": {...}}``, which the openai client turns into exceptions."""
    error: ErrorInfo
