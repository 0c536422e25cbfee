"""Ollama's native API on `callm serve`: /api/chat, /api/generate, /api/tags, /api/show,
/api/ps, /api/version and the liveness answer on /.

A thin translator over the one chat pipeline (`callm.entrypoints.chat`): an Ollama request
becomes a `ChatCompletionRequest` (messages, tools, `think` as the template's enable_thinking /
reasoning_effort, `format` as the structured-output constraint, `options` as sampling
parameters), the pipeline renders and plans it, the engine runs it, and the pipeline's
`ChatResult` or deltas become Ollama's replies: one JSON object, or NDJSON lines ending with a
`done` line that carries the counts and durations (integers, nanoseconds).

Wire facts the `ollama` client relies on: `function.arguments` is an object, so a call goes out
once its arguments are a complete JSON object and a call cut off by `num_predict` never goes out;
every call of a message has its own `function.index` (0, 1, 2, ...); errors are
`{"error": "..."}` with a 4xx status before streaming starts, and an `{"error": ...}` line once
it has.
"""

import asyncio
import hashlib
import json
import math
import re
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from callm import __version__
from callm.engine.sampling_params import StructuredOutputsParams
from callm.entrypoints.chat import ChatPipeline, ChatRequestError, merge_deltas, with_params
from callm.entrypoints.ollama.protocol import (THINK_LEVELS, ChatRequest, GenerateRequest,
                                               Message, Options, ShowRequest)
from callm.entrypoints.openai.protocol import ChatCompletionRequest, DeltaToolCall
from callm.entrypoints.openai.serving_common import (FINISH_REASONS, APIError, RequestTimer,
                                                     ServingContext, random_id, sampling_params)

# The Ollama release whose API this follows (clients compare versions to enable features:
# `think`, tool_name, tool-call index).
OLLAMA_VERSION = "0.12.0"
_ID_CHARS = string.ascii_lowercase + string.digits


class OllamaError(Exception):
    """Answered as Ollama's `{"error": message}` with `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def error_body(message: str) -> dict:
    return {"error": message}


def _line(reply: dict) -> str:
    """One NDJSON line, compact as Ollama writes them."""
    return json.dumps(reply, separators=(",", ":"), ensure_ascii=False) + "\n"


def now_iso() -> str:
    """Ollama's `created_at`: ISO 8601 in UTC with a Z."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


def _tool_call_id() -> str:
    """Ollama's ids: `call_` and 8 random lowercase letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(8))


def _stable_call_id(message_index: int, call_index: int, name: str) -> str:
    """An id for an earlier call the client sent back without one (the `ollama` client drops
    them): the same conversation always renders the same prompt."""
    digest = hashlib.sha256(f"{message_index}:{call_index}:{name}".encode()).hexdigest()
    return "call_" + digest[:8]


# --------------------------------------------------------------------------- model facts

@dataclass
class ModelFacts:
    """What /api/tags, /api/show and /api/ps say about the served model (cheap to compute:
    the config, file sizes and times; no weights are read)."""
    path: Path
    size: int
    modified_at: str
    digest: str
    details: dict
    model_info: dict


_QUANT = re.compile(r"(?i)(?:^|[.\-_])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?=\.gguf$)")


def model_facts(path: Path, max_model_len: int) -> ModelFacts:
    from callm.model_executor.loader import load_config

    files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()
                                           and p.suffix in (".safetensors", ".bin", ".gguf")]
    size = sum(p.stat().st_size for p in files)
    mtime = max((p.stat().st_mtime for p in files), default=path.stat().st_mtime)
    digest = hashlib.sha256(f"{path.resolve()}:{size}:{mtime}".encode()).hexdigest()
    config = load_config(path)
    family = config.model_type
    gguf = path.suffix == ".gguf"
    if gguf:
        match = _QUANT.search(path.name)
        quant = match.group(1).upper() if match else "unknown"
    else:
        dtype = str(getattr(config, "torch_dtype", None) or getattr(config, "dtype", "") or "")
        quant = {"torch.float32": "F32", "float32": "F32", "torch.bfloat16": "BF16",
                 "bfloat16": "BF16", "torch.float16": "F16", "float16": "F16"}.get(dtype,
                                                                                  "unknown")
    params = _parameter_count(config)
    details = {"parent_model": "", "format": "gguf" if gguf else "safetensors",
               "family": family, "families": [family],
               "parameter_size": _human_count(params), "quantization_level": quant}
    heads = getattr(config, "num_attention_heads", None)
    model_info = {
        "general.architecture": family,
        "general.parameter_count": params,
        f"{family}.context_length": getattr(config, "max_position_embeddings", max_model_len),
        f"{family}.embedding_length": getattr(config, "hidden_size", None),
        f"{family}.block_count": getattr(config, "num_hidden_layers", None),
        f"{family}.attention.head_count": heads,
        f"{family}.attention.head_count_kv": getattr(config, "num_key_value_heads", heads),
        f"{family}.vocab_size": getattr(config, "vocab_size", None),
    }
    return ModelFacts(path, size, _iso(mtime), digest, details,
                      {k: v for k, v in model_info.items() if v is not None})


def _parameter_count(config) -> int:
    """The weights a decoder of this config holds (embeddings, attention, gated MLP, norms)."""
    hidden = getattr(config, "hidden_size", 0) or 0
    vocab = getattr(config, "vocab_size", 0) or 0
    layers = getattr(config, "num_hidden_layers", 0) or 0
    heads = getattr(config, "num_attention_heads", 1) or 1
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    inter = getattr(config, "intermediate_size", 0) or 0
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    per_layer = attention + 3 * hidden * inter + 2 * hidden
    embeddings = vocab * hidden * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + hidden


def _human_count(n: int) -> str:
    """Ollama's parameter_size: "134.52M", "1.5B"."""
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.2f}K" if n >= 1e3 else str(n)


# --------------------------------------------------------------------------- tool calls out

class _Calls:
    """Streamed tool-call fragments -> whole Ollama calls. A call goes out once its arguments
    are a complete JSON object (nothing can follow an object's closing brace) and every call
    before it has gone out; `flush` sends the rest whose arguments are objects and drops any
    that are not (a call cut off by num_predict)."""

    def __init__(self):
        self.parts: dict[int, dict] = {}
        self.next = 0  # the first stream index not yet sent or dropped
        self.sent = 0  # Ollama's function.index of the next call sent

    def add(self, deltas: list[DeltaToolCall]) -> list[dict]:
        for tc in deltas:
            part = self.parts.setdefault(tc.index, {"name": "", "arguments": ""})
            if tc.function is not None:
                part["name"] += tc.function.name or ""
                part["arguments"] += tc.function.arguments or ""
        out = []
        while self.next in self.parts:
            arguments = _object(self.parts[self.next]["arguments"])
            if arguments is None:
                break
            out.append(self._send(self.parts[self.next]["name"], arguments))
            self.next += 1
        return out

    def flush(self) -> list[dict]:
        out = []
        for index in sorted(i for i in self.parts if i >= self.next):
            arguments = _object(self.parts[index]["arguments"])
            if arguments is not None:
                out.append(self._send(self.parts[index]["name"], arguments))
        self.next = max(self.parts, default=-1) + 1
        return out

    def whole(self, calls) -> list[dict]:
        """A ChatResult's calls (OpenAI ToolCalls, arguments as JSON text)."""
        out = []
        for call in calls:
            arguments = _object(call.function.arguments)
            if arguments is not None:
                out.append(self._send(call.function.name, arguments))
        return out

    def _send(self, name: str, arguments: dict) -> dict:
        call = {"id": _tool_call_id(),
                "function": {"index": self.sent, "name": name, "arguments": arguments}}
        self.sent += 1
        return call


def _object(text: str) -> dict | None:
    """`text` as a JSON object, or None (incomplete, malformed, or not an object)."""
    if not text or "}" not in text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- the service

@dataclass
class _Run:
    """One request in flight: what the replies need besides the engine's outputs."""
    model: str  # the name the client asked for, echoed as Ollama does
    prepared: Any  # PreparedChat, or None for a raw generate
    prompt_ids: list[int]
    outputs: Any  # the engine's async iterator
    first: Any  # its first RequestOutput
    timer: RequestTimer
    logprobs: bool


class OllamaServing:
    def __init__(self, ctx: ServingContext, pipeline: ChatPipeline):
        self.ctx = ctx
        self.pipeline = pipeline
        self._facts: ModelFacts | None = None

    # ----- models -----

    def facts(self) -> ModelFacts:
        if self._facts is None:
            self._facts = model_facts(self.ctx.engine.engine.model_path, self.ctx.max_model_len)
        return self._facts

    @property
    def name(self) -> str:
        """The served name as Ollama lists it (with a tag)."""
        name = self.ctx.model_names[0]
        return name if ":" in name else f"{name}:latest"

    def check_model(self, model: str) -> str:
        if not model:
            raise OllamaError("model is required")
        names = set(self.ctx.model_names)
        if model in names or model.removesuffix(":latest") in names or model == self.name:
            return model
        raise OllamaError(f"model '{model}' not found", 404)

    def capabilities(self) -> list[str]:
        caps = ["completion"]
        if self.pipeline.tool_parser_cls is not None:
            caps.append("tools")
        if self.pipeline.reasoning_parser_cls is not None:
            caps.append("thinking")
        return caps

    def tags(self) -> dict:
        facts = self.facts()
        return {"models": [{"name": self.name, "model": self.name,
                            "modified_at": facts.modified_at, "size": facts.size,
                            "digest": facts.digest, "details": facts.details}]}

    def ps(self) -> dict:
        import torch

        facts = self.facts()
        on_gpu = torch.cuda.is_available()
        expires = datetime.now(timezone.utc) + timedelta(days=365 * 100)  # never unloaded
        return {"models": [{"name": self.name, "model": self.name, "size": facts.size,
                            "digest": facts.digest, "details": facts.details,
                            "expires_at": expires.isoformat().replace("+00:00", "Z"),
                            "size_vram": facts.size if on_gpu else 0,
                            "context_length": self.ctx.max_model_len}]}

    def show(self, body: ShowRequest) -> dict:
        self.check_model(body.model or body.name)
        facts = self.facts()
        template = self.pipeline.chat_template or self.ctx.tokenizer.chat_template or ""
        if isinstance(template, dict):
            template = template.get("tool_use") or template.get("default") or ""
        return {"license": "",
                "modelfile": f"# Modelfile generated by callm {__version__}\nFROM {facts.path}\n",
                "parameters": f"num_ctx {self.ctx.max_model_len}",
                "template": template, "details": facts.details, "model_info": facts.model_info,
                "capabilities": self.capabilities(), "modified_at": facts.modified_at}

    # ----- chat -----

    async def chat(self, body: ChatRequest, is_disconnected: Callable[[], Awaitable[bool]]):
        """One reply dict, or an async iterator of NDJSON lines when streaming."""
        model = self.check_model(body.model)
        if not body.messages:  # Ollama's way to load a model
            return self._loaded(model, body.keep_alive, {"message": {"role": "assistant",
                                                                     "content": ""}})
        messages = _messages(body.messages, model)
        tools = self._tools(body.tools, model)
        request = self._request(body, model, messages, tools)
        run = await self._start(body, model, request)
        if body.stream:
            return self._stream(run, chat=True)
        return await self._whole(run, is_disconnected, chat=True)

    # ----- generate -----

    async def generate(self, body: GenerateRequest,
                       is_disconnected: Callable[[], Awaitable[bool]]):
        model = self.check_model(body.model)
        if body.images:
            raise OllamaError(f"images: '{model}' does not support images (callm models read "
                              "text only)")
        if body.suffix:
            raise OllamaError(f"suffix: '{model}' does not support insert")
        if body.template:
            raise OllamaError("template: Go templates are not supported; callm renders the "
                              "model's chat template (or none with raw=true)")
        if not body.prompt and not body.system:  # Ollama's way to load a model
            return self._loaded(model, body.keep_alive, {"response": ""})
        if body.raw:
            # (the request only carries the sampling fields: no template renders it)
            request = self._request(body, model, [{"role": "user", "content": body.prompt}],
                                    None)
            run = await self._start(body, model, request, raw_prompt=body.prompt or "")
        else:
            messages = [{"role": "system", "content": body.system}] if body.system else []
            messages.append({"role": "user", "content": body.prompt or ""})
            request = self._request(body, model, messages, None)
            run = await self._start(body, model, request, context=body.context)
        if body.stream:
            return self._stream(run, chat=False)
        return await self._whole(run, is_disconnected, chat=False)

    # ----- translation in -----

    def _tools(self, tools: list[dict] | None, model: str) -> list[dict] | None:
        if not tools:
            return None
        if self.pipeline.tool_parser_cls is None:
            raise OllamaError(f"'{model}' does not support tools (no tool-call parser: serve it "
                              "with --tool-call-parser)")
        out = []
        for i, tool in enumerate(tools):
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise OllamaError(f"tools[{i}].function.name is required")
            function = {"name": fn["name"]}
            if fn.get("description"):
                function["description"] = fn["description"]
            if isinstance(fn.get("parameters"), dict):
                function["parameters"] = _schema_types(fn["parameters"])
            out.append({"type": "function", "function": function})
        return out

    def _thinking(self, think, model: str) -> tuple[dict, str | None]:
        """`think` -> (chat_template_kwargs, reasoning_effort)."""
        if think is None:
            return {}, None
        if isinstance(think, str) and think not in THINK_LEVELS:
            raise OllamaError(f"think: invalid value {think!r}; use true, false, "
                              + ", ".join(f'"{t}"' for t in THINK_LEVELS))
        if self.pipeline.reasoning_parser_cls is None:
            if think is False:
                return {}, None
            raise OllamaError(f'"{model}" does not support thinking')
        if think is False:
            return {"enable_thinking": False}, None
        return {"enable_thinking": True}, (think if isinstance(think, str) else None)

    def _request(self, body, model: str, messages: list[dict],
                 tools: list[dict] | None) -> ChatCompletionRequest:
        options = body.options or Options()
        template_kwargs, effort = self._thinking(body.think, model)
        fields = dict(
            model=None, messages=messages, tools=tools, stream=body.stream,
            temperature=options.temperature, top_p=options.top_p,
            top_k=options.top_k if options.top_k and options.top_k > 0 else None,
            min_p=options.min_p, seed=options.seed, stop=options.stop,
            presence_penalty=options.presence_penalty or 0.0,
            frequency_penalty=options.frequency_penalty or 0.0,
            repetition_penalty=options.repeat_penalty, logprobs=body.logprobs,
            top_logprobs=body.top_logprobs if body.logprobs else None,
            chat_template_kwargs=template_kwargs or None, reasoning_effort=effort)
        try:
            return ChatCompletionRequest(**fields)
        except ValidationError as e:
            first = e.errors()[0]
            loc = [str(p) for p in first.get("loc", ())]
            where = _FIELD_NAMES.get(loc[0], loc[0]) if loc else ""
            rest = ".".join(loc[1:])
            where = f"{where}.{rest}" if rest and where else where or rest
            raise OllamaError(f"{where}: {first.get('msg', 'invalid value')}") from None

    async def _start(self, body, model: str, request: ChatCompletionRequest, *,
                     raw_prompt: str | None = None, context: list[int] | None = None) -> _Run:
        ctx = self.ctx
        constraint = _format(body.format)
        if raw_prompt is not None:
            prepared = None
            prompt_ids = ctx.tokenizer.encode(raw_prompt)
        else:
            try:
                prepared = self.pipeline.prepare(request, constraint)
            except ChatRequestError as e:
                param = _FIELD_NAMES.get(e.param or "", e.param)
                raise OllamaError(f"{param}: {e}" if param else str(e)) from None
            prompt_ids = ctx.tokenizer.encode(prepared.prompt, add_special_tokens=False)
        if context:
            vocab = len(ctx.tokenizer)
            if any(not 0 <= t < vocab for t in context):
                raise OllamaError(f"context: token ids must be in [0, {vocab})")
            prompt_ids = list(context) + prompt_ids
        if not prompt_ids:
            raise OllamaError("prompt: the prompt is empty")
        options = body.options or Options()
        window = min(options.num_ctx or ctx.max_model_len, ctx.max_model_len)
        room = window - len(prompt_ids)
        if room <= 0:
            cap = "options.num_ctx" if options.num_ctx and options.num_ctx < ctx.max_model_len \
                else "the model's context length"
            raise OllamaError(f"the prompt is {len(prompt_ids)} tokens, which leaves no room in "
                              f"the context window of {window} tokens ({cap})")
        predict = options.num_predict
        max_tokens = min(predict, room) if predict is not None and predict > 0 else room
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        try:
            params = sampling_params(prepared.request if prepared else request, len(prompt_ids),
                                     ctx, max_tokens=max_tokens, logprobs=logprobs,
                                     structured_outputs=None if prepared else constraint)
        except APIError as e:
            raise OllamaError(e.message, e.status) from None
        if prepared is not None:
            params = with_params(params, prepared)
        outputs = ctx.engine.generate(prompt_ids, params, random_id("ollama-"),
                                      add_special_tokens=False)
        timer = RequestTimer()
        try:
            first = await anext(outputs)
        except ValueError as e:  # e.g. a schema the grammar backend cannot compile
            message = str(e)
            raise OllamaError(f"format: {message}" if body.format else message) from None
        return _Run(model, prepared, prompt_ids, outputs, first, timer, bool(body.logprobs))

    # ----- translation out -----

    def _loaded(self, model: str, keep_alive, reply: dict) -> dict:
        unload = keep_alive is not None and str(keep_alive).strip() in ("0", "0s", "0.0")
        return {"model": model, "created_at": now_iso(), **reply, "done": True,
                "done_reason": "unload" if unload else "load"}

    async def _whole(self, run: _Run, is_disconnected, chat: bool) -> dict:
        final = run.first
        run.timer.tokens_arrived(len(run.first.outputs[0].token_ids))
        async for final in run.outputs:
            if await is_disconnected():
                await run.outputs.aclose()  # aborts the request, freeing its KV blocks
                raise OllamaError("client disconnected", 499)
        run.timer.tokens_arrived(1)
        run.timer.report(self.ctx, final)
        out = final.outputs[0]
        finish = FINISH_REASONS[out.finish_reason]
        if run.prepared is None:
            reasoning, content, calls = None, out.text, []
        else:
            result = self.pipeline.reader(run.prepared).whole(out.text, finish)
            reasoning, content = result.reasoning, result.content
            calls = _Calls().whole(result.tool_calls)
        reply = self._piece(run, chat, content or "", reasoning, calls,
                            self._logprobs(out.logprobs) if run.logprobs else None)
        return self._done(run, reply, chat, out, finish)

    async def _stream(self, run: _Run, chat: bool) -> AsyncIterator[str]:
        reader = self.pipeline.reader(run.prepared) if run.prepared is not None else None
        calls = _Calls()
        final, out, sent_text, seen = run.first, None, "", 0
        finish = "stop"
        try:
            pending = [run.first]
            while True:
                for output in pending:
                    final = output
                    out = output.outputs[0]
                    run.timer.tokens_arrived(len(out.token_ids) - seen)
                    logprobs = (self._logprobs(out.logprobs[seen:])
                                if run.logprobs and out.logprobs else None)
                    seen = len(out.token_ids)
                    if out.finished:
                        finish = FINISH_REASONS[out.finish_reason]
                    if reader is None:
                        content, reasoning, new_calls = out.text[len(sent_text):], None, []
                        sent_text = out.text
                    else:
                        delta = reader.feed(out.text, out.token_ids)
                        if out.finished:
                            last, _ = reader.finish(finish)
                            delta = merge_deltas(delta, last)
                        content = delta.content if delta else None
                        reasoning = delta.reasoning_content if delta else None
                        new_calls = calls.add(delta.tool_calls) if delta else []
                        if out.finished:
                            new_calls += calls.flush()
                    if content or reasoning or new_calls or logprobs:
                        piece = self._piece(run, chat, content or "", reasoning, new_calls,
                                            logprobs)
                        yield _line({**piece, "done": False})
                if out.finished:
                    break
                pending = [await anext(run.outputs)]
        except Exception as e:  # the engine failed mid-stream: say so in the stream
            yield _line(error_body(str(e) or type(e).__name__))
            return
        finally:
            await run.outputs.aclose()
        run.timer.report(self.ctx, final)
        reply = self._piece(run, chat, "", None, [], None)
        yield _line(self._done(run, reply, chat, out, finish))

    def _piece(self, run: _Run, chat: bool, content: str, reasoning: str | None,
               calls: list[dict], logprobs: list | None) -> dict:
        if chat:
            message = {"role": "assistant", "content": content}
            if reasoning:
                message["thinking"] = reasoning
            if calls:
                message["tool_calls"] = calls
            piece = {"model": run.model, "created_at": now_iso(), "message": message}
        else:
            piece = {"model": run.model, "created_at": now_iso(), "response": content}
            if reasoning:
                piece["thinking"] = reasoning
        if logprobs is not None:
            piece["logprobs"] = logprobs
        return piece

    def _done(self, run: _Run, reply: dict, chat: bool, out, finish: str) -> dict:
        """The last reply: done, why, and Ollama's counts and durations (ns integers)."""
        timer = run.timer
        end = time.monotonic()
        first = timer.first_token or end
        reply.update(done=True, done_reason="length" if finish == "length" else "stop")
        if not chat:
            reply["context"] = list(run.prompt_ids) + list(out.token_ids if out else [])
        reply.update(total_duration=_ns(end - timer.start), load_duration=0,
                     prompt_eval_count=len(run.prompt_ids),
                     prompt_eval_duration=max(1, _ns(first - timer.start)),
                     eval_count=len(out.token_ids) if out else 0,
                     eval_duration=max(1, _ns(end - first)))
        return reply

    def _logprobs(self, entries: list[dict]) -> list[dict]:
        decode = self.ctx.tokenizer.decode

        def entry(token_id: int, logprob: float) -> dict:
            text = decode([token_id])
            finite = logprob if math.isfinite(logprob) else -9999.0
            return {"token": text, "logprob": finite, "bytes": list(text.encode())}

        return [{**entry(e["token_id"], e["logprob"]),
                 "top_logprobs": [entry(t, lp) for t, lp in e["top"]]} for e in entries]


# Where the ChatCompletionRequest's fields came from in the Ollama request (for errors).
_FIELD_NAMES = {
    "temperature": "options.temperature", "top_p": "options.top_p", "top_k": "options.top_k",
    "min_p": "options.min_p", "seed": "options.seed", "stop": "options.stop",
    "presence_penalty": "options.presence_penalty",
    "frequency_penalty": "options.frequency_penalty",
    "repetition_penalty": "options.repeat_penalty", "max_tokens": "options.num_predict",
    "response_format": "format", "structured_outputs": "format", "tool_choice": "tools",
    "chat_template_kwargs": "think", "reasoning_effort": "think",
    "thinking_token_budget": "think", "top_logprobs": "top_logprobs"}


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def _format(fmt) -> StructuredOutputsParams | None:
    """`format`: "json" (any JSON object) or a JSON Schema -> the output constraint."""
    if fmt is None or fmt == "":
        return None
    try:
        if fmt == "json":
            return StructuredOutputsParams(json_object=True)
        if isinstance(fmt, dict):
            return StructuredOutputsParams(json=fmt)
    except ValueError as e:
        raise OllamaError(f"format: {e}") from None
    raise OllamaError('format: must be "json" or a JSON Schema object')


def _schema_types(schema: dict) -> dict:
    """The `ollama` client writes a Python function's union parameter as one type string,
    "integer, string": make it the JSON Schema list ["integer", "string"]."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str) and "," in kind:
        out["type"] = [t.strip() for t in kind.split(",") if t.strip()]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _schema_types(v) if isinstance(v, dict) else v
                        for k, v in out[key].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _schema_types(out["items"])
    return out


def _messages(messages: list[Message], model: str) -> list[dict]:
    """Ollama messages -> OpenAI-shaped ones. Calls the client sent back without ids (the
    `ollama` client drops them) get stable ids; a tool result without `tool_call_id` answers
    the first unanswered call of the latest assistant turn with its `tool_name` (else the first
    unanswered one), so the template sees consistent ids."""
    out: list[dict] = []
    pending: list[tuple[str, str]] = []  # (id, name) of unanswered calls, in order
    for i, m in enumerate(messages):
        if m.images:
            raise OllamaError(f"messages[{i}].images: '{model}' does not support images "
                              "(callm models read text only)")
        if m.role in ("system", "user"):
            out.append({"role": m.role, "content": m.content or ""})
        elif m.role == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.thinking:
                message["reasoning_content"] = m.thinking
            calls = []
            for j, call in enumerate(m.tool_calls or []):
                arguments = call.function.arguments
                if isinstance(arguments, str):
                    if _object(arguments) is None and arguments.strip():
                        raise OllamaError(f"messages[{i}].tool_calls[{j}].function.arguments "
                                          "must be a JSON object")
                    arguments = arguments or "{}"
                else:
                    arguments = json.dumps(arguments, ensure_ascii=False)
                calls.append({"id": call.id or _stable_call_id(i, j, call.function.name),
                              "type": "function",
                              "function": {"name": call.function.name, "arguments": arguments}})
            if calls:
                message["tool_calls"] = calls
            pending = [(c["id"], c["function"]["name"]) for c in calls]
            out.append(message)
        elif m.role == "tool":
            call_id, name = m.tool_call_id, m.tool_name
            match = None
            if call_id is not None:
                match = next((p for p in pending if p[0] == call_id), None)
            else:
                match = next((p for p in pending if p[1] == name), None) if name else None
                match = match or (pending[0] if pending else None)
                call_id = match[0] if match else _stable_call_id(i, 0, name or "tool")
            if match is not None:
                pending.remove(match)
                name = name or match[1]
            message = {"role": "tool", "content": m.content or "", "tool_call_id": call_id}
            if name:
                message["name"] = name
            out.append(message)
        else:
            raise OllamaError(f"messages[{i}].role: unknown role {m.role!r}; use system, user, "
                              "assistant or tool")
    return out


# --------------------------------------------------------------------------- routes

async def _body(raw: Request, model: type[BaseModel]):
    data = await raw.body()
    if not data.strip():
        raise OllamaError("missing request body")
    try:
        value = json.loads(data)
    except ValueError as e:
        raise OllamaError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise OllamaError("the request body must be a JSON object")
    # null is absent, as in Ollama (Go): "stream": null streams, "options": {"seed": null} ...
    value = {k: v for k, v in value.items() if v is not None}
    if isinstance(value.get("options"), dict):
        value["options"] = {k: v for k, v in value["options"].items() if v is not None}
    try:
        return model.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = first.get("msg", "invalid value")
        raise OllamaError(f"{where}: {message}" if where else message) from None


def _reply(result, stream: bool):
    if stream and not isinstance(result, dict):
        return StreamingResponse(result, media_type="application/x-ndjson")
    return JSONResponse(result)


def ollama_router(serving: OllamaServing) -> APIRouter:
    """The Ollama routes; the app maps `OllamaError` to `{"error": ...}` (api_server)."""
    router = APIRouter()

    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def alive():
        return PlainTextResponse("Ollama is running")

    @router.api_route("/api/version", methods=["GET", "HEAD"])
    async def version():
        return {"version": OLLAMA_VERSION, "callm": __version__}

    @router.get("/api/tags")
    async def tags():
        return await asyncio.to_thread(serving.tags)

    @router.get("/api/ps")
    async def ps():
        return await asyncio.to_thread(serving.ps)

    @router.post("/api/show")
    async def show(raw: Request):
        body = await _body(raw, ShowRequest)
        return await asyncio.to_thread(serving.show, body)

    @router.post("/api/chat")
    async def chat(raw: Request):
        body = await _body(raw, ChatRequest)
        return _reply(await serving.chat(body, raw.is_disconnected), body.stream)

    @router.post("/api/generate")
    async def generate(raw: Request):
        body = await _body(raw, GenerateRequest)
        return _reply(await serving.generate(body, raw.is_disconnected), body.stream)

    return router

