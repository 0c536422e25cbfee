"""What the chat and completion handlers share: errors, request -> SamplingParams, the served
model's facts, and per-request timing for metrics."""

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from callm.engine.async_engine import AsyncLLMEngine
from callm.engine.request import RequestOutput
from callm.engine.sampling_params import SamplingParams, StructuredOutputsParams
from callm.metrics import Metrics


# Engine finish reasons -> OpenAI's ("abort" only reaches a client that already left).
FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "stop", None: "stop"}


class APIError(Exception):
    """A client mistake, answered as OpenAI's error JSON with a 4xx status."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 type: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param, self.type, self.code = (
            message, status, param, type, code)


@dataclass
class ServingContext:
    engine: AsyncLLMEngine
    model_names: list[str]  # the first is reported in responses
    max_model_len: int
    metrics: Metrics
    chat_template: str | None = None
    enable_auto_tool_choice: bool = False
    # A registered parser name, "auto", or None; OpenAIServingChat replaces "auto"/None with
    # the parser detected from the chat template (None when none is detected and none needed).
    tool_parser_name: str | None = None
    reasoning_parser_name: str | None = None
    mcp: Any = None  # callm.agents.mcp.MCPServers of --mcp-config: `{"type": "mcp"}` tools
    tool_limits: Any = None  # callm.agents.tools.ToolLimits for those tools (None: defaults)
    max_tool_rounds: int = 8  # default and most rounds of MCP tools one request may run

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def check_model(self, model: str | None) -> str:
        if model is not None and model not in self.model_names:
            raise APIError(f"The model `{model}` does not exist.", 404, "model",
                           code="model_not_found")
        return self.model_names[0]

    def check_prompt_tokens(self, prompt_ids: list[int]) -> None:
        vocab = len(self.tokenizer)
        if not prompt_ids:
            raise APIError("the prompt is empty", param="prompt")
        if any(not 0 <= t < vocab for t in prompt_ids):
            raise APIError(f"prompt token ids must be in [0, {vocab})", param="prompt")


def random_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def sampling_params(request, prompt_len: int, ctx: ServingContext, **overrides) -> SamplingParams:
    """SamplingParams for an OpenAI request, checking it fits the context window."""
    room = ctx.max_model_len - prompt_len
    max_tokens = request.effective_max_tokens()
    if room <= 0 or (max_tokens is not None and max_tokens > room):
        asked = f" and {max_tokens} in the completion" if max_tokens is not None else ""
        raise APIError(f"This model's maximum context length is {ctx.max_model_len} tokens. "
                       f"However, you requested {prompt_len} tokens in the prompt{asked}. "
                       "Please reduce the length of the prompt or of max_tokens.",
                       param="messages" if hasattr(request, "messages") else "prompt",
                       code="context_length_exceeded")
    processors = []
    if request.logit_bias:
        processors.append(_logit_bias(request.logit_bias, len(ctx.tokenizer)))
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    args = dict(
        n=request.n, temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=request.top_k or 0, min_p=request.min_p or 0.0,
        presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
        repetition_penalty=request.repetition_penalty or 1.0, seed=request.seed,
        max_tokens=max_tokens if max_tokens is not None else room,
        min_tokens=request.min_tokens, stop=stop, stop_token_ids=request.stop_token_ids or [],
        ignore_eos=request.ignore_eos, skip_special_tokens=request.skip_special_tokens,
        include_stop_str_in_output=request.include_stop_str_in_output,
        logits_processors=processors)
    if "structured_outputs" not in overrides:
        args["structured_outputs"] = structured_outputs_params(request)
    args.update(overrides)
    try:
        return SamplingParams(**args)
    except ValueError as e:
        raise APIError(str(e)) from None


def structured_outputs_params(request) -> StructuredOutputsParams | None:
    """The constraint a request asks for with `response_format` (json_object, json_schema) or
    `structured_outputs` (json, json_object, regex, choice, grammar, structural_tag; backend)."""
    fields = {}
    if request.structured_outputs is not None:
        fields = request.structured_outputs.model_dump(exclude_none=True)
        if "json_" in fields:
            fields["json"] = fields.pop("json_")
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        if set(fields) - {"backend"}:
            raise APIError("response_format and structured_outputs both constrain the output; "
                           "give one of them", param="response_format")
        schema = fmt.json_schema.json_schema if fmt.type == "json_schema" else None
        if schema is None:
            fields["json_object"] = True
        else:
            fields["json"] = schema
    if not fields:
        return None
    try:
        return StructuredOutputsParams(**fields)
    except ValueError as e:
        raise APIError(str(e), param="structured_outputs") from None


def _logit_bias(bias: dict[int, float], vocab: int):
    if any(not 0 <= t < vocab for t in bias):
        raise APIError(f"logit_bias token ids must be in [0, {vocab})", param="logit_bias")
    ids = torch.tensor(list(bias), dtype=torch.long)
    values = torch.tensor(list(bias.values()), dtype=torch.float32)

    def apply(_output_ids, logits: torch.Tensor) -> torch.Tensor:
        logits[ids] += values
        return logits

    return apply


@dataclass
class RequestTimer:
    """Arrival, first token and token times of one request, for the latency histograms."""

    start: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    last_token: float | None = None
    inter_token: list[float] = field(default_factory=list)

    def tokens_arrived(self, count: int) -> None:
        if count <= 0:
            return
        now = time.monotonic()
        if self.first_token is None:
            self.first_token = now
        elif self.last_token is not None:
            self.inter_token.append((now - self.last_token) / count)
        self.last_token = now

    def report(self, ctx: ServingContext, output: RequestOutput) -> None:
        completion_tokens = sum(len(o.token_ids) for o in output.outputs)
        ctx.metrics.request_finished(
            prompt_tokens=len(output.prompt_token_ids), completion_tokens=completion_tokens,
            ttft=(self.first_token or time.monotonic()) - self.start,
            e2e=time.monotonic() - self.start, inter_token=self.inter_token,
            finish_reasons=[o.finish_reason or "abort" for o in output.outputs])
