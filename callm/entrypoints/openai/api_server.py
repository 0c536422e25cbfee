"""The HTTP server (FastAPI + uvicorn): the OpenAI-compatible API under /v1 and Ollama's native
API under /api (`callm.entrypoints.ollama`), on one port.

Every client mistake becomes the API's own error JSON with a 4xx status — OpenAI's
`{"error": {"message", ...}}` under /v1 (validation errors name the field), Ollama's
`{"error": "..."}` under /api — so the official clients raise their usual exceptions and the
server keeps serving.
"""

import hmac
import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from callm import __version__
from callm.engine.async_engine import AsyncLLMEngine, EngineDeadError
from callm.entrypoints.chat import ChatPipeline
from callm.entrypoints.ollama.serving import OllamaError, OllamaServing, ollama_router
from callm.entrypoints.openai.protocol import (ChatCompletionRequest, CompletionRequest,
                                               ErrorInfo, ErrorResponse, ModelCard, ModelList)
from callm.entrypoints.openai.serving_chat import OpenAIServingChat
from callm.entrypoints.openai.serving_common import APIError, ServingContext
from callm.entrypoints.openai.serving_completion import OpenAIServingCompletion

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 2**20


def error_response(status: int, message: str, param: str | None = None,
                   type: str = "invalid_request_error", code: str | None = None,
                   path: str = "") -> JSONResponse:
    """The error body of the API `path` belongs to: Ollama's under /api, else OpenAI's."""
    if is_ollama(path):
        return JSONResponse({"error": message}, status_code=status)
    body = ErrorResponse(error=ErrorInfo(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def is_ollama(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


# Ollama's liveness routes answer without the API key, as Ollama's own do.
OPEN_OLLAMA_PATHS = frozenset({"/api/version"})


class TokenizeRequest(BaseModel):
    model: str | None = None
    prompt: str | None = None
    messages: list[dict] | None = None
    add_special_tokens: bool = True


class DetokenizeRequest(BaseModel):
    model: str | None = None
    tokens: list[int]


class _Guard:
    """API key on every /v1 and /api route (but Ollama's liveness ones); refuse oversized
    bodies before reading them.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) hides
    the client's disconnect from `Request.is_disconnected()`, so an abandoned non-streamed
    request would run to the end holding its KV blocks."""

    def __init__(self, app, api_key: str | None):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            path = scope["path"]
            protected = path.startswith("/v1") or (is_ollama(path)
                                                    and path not in OPEN_OLLAMA_PATHS)
            if self.api_key and protected:
                given = headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                    response = error_response(401, "Incorrect or missing API key.",
                                              type="authentication_error",
                                              code="invalid_api_key", path=path)
                    return await response(scope, receive, send)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
                response = error_response(413, f"Request body larger than {MAX_BODY_BYTES} bytes.",
                                          path=path)
                return await response(scope, receive, send)
            if length is None:  # chunked: count the bytes as they arrive
                receive = _limited(receive)
        await self.app(scope, receive, send)


def _limited(receive):
    received = 0

    async def limited_receive():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:  # raised while the body is read: answered as 413
                raise StarletteHTTPException(413, f"Request body larger than {MAX_BODY_BYTES} "
                                                  "bytes.")
        return message

    return limited_receive


def build_app(ctx: ServingContext, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="callm", version=__version__)
    chat = OpenAIServingChat(ctx)
    completion = OpenAIServingCompletion(ctx)

    # Ollama's routes parse calls whenever the model has a tool parser (Ollama has no
    # --enable-auto-tool-choice), with the parsers and template the OpenAI route resolved.
    ollama = OllamaServing(ctx, ChatPipeline(ctx.tokenizer, chat.default_template,
                                             chat.parser_cls,
                                             chat.pipeline.reasoning_parser_cls,
                                             parse_auto=True))

    app.add_middleware(_Guard, api_key=api_key)

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return error_response(e.status, e.message, e.param, e.type, e.code,
                              path=request.url.path)

    @app.exception_handler(OllamaError)
    async def ollama_error(_request, e: OllamaError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":  # its loc is a character offset, not a field
            reason = (first.get("ctx") or {}).get("error")
            at = f" at character {loc[0]}" if loc else ""
            return error_response(400, "The request body is not valid JSON"
                                  + (f" ({reason}{at})." if reason else f"{at}."))
        where = ".".join(loc)
        return error_response(400, f"{where}: {message}" if where else message,
                              param=loc[0] if loc else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail),
                              type="not_found_error" if e.status_code == 404 else
                              "invalid_request_error", path=request.url.path)

    @app.exception_handler(EngineDeadError)
    async def engine_dead(request: Request, e: EngineDeadError):
        return error_response(503, str(e), type="server_error", path=request.url.path)

    @app.get("/health")
    async def health():
        if not ctx.engine.healthy:
            return error_response(503, f"engine unhealthy: {ctx.engine.dead_error}",
                                  type="server_error")
        return Response(status_code=200)

    @app.get("/version")
    async def version():
        return {"version": __version__}

    @app.get("/v1/models")
    async def models():
        return ModelList(data=[ModelCard(id=name, root=ctx.model_names[-1],
                                         max_model_len=ctx.max_model_len)
                               for name in ctx.model_names[:1]])

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, raw: Request):
        result = await chat.create(body, raw.is_disconnected)
        if body.stream:
            return StreamingResponse(result, media_type="text/event-stream")
        return JSONResponse(json.loads(result.model_dump_json()))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, raw: Request):
        result = await completion.create(body, raw.is_disconnected)
        if body.stream:
            return StreamingResponse(result, media_type="text/event-stream")
        return JSONResponse(json.loads(result.model_dump_json()))

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        ctx.check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise APIError("give exactly one of prompt or messages", param="prompt")
        if body.messages is not None:
            try:
                request = ChatCompletionRequest(messages=body.messages)
            except ValidationError as e:
                raise APIError(str(e.errors()[0]["msg"]), param="messages") from None
            from callm.entrypoints.chat_utils import render_chat

            try:
                text = render_chat(ctx.tokenizer, request.messages,
                                   chat_template=chat.default_template)
            except ValueError as e:
                raise APIError(str(e), param="messages") from None
            tokens = ctx.tokenizer.encode(text, add_special_tokens=False)
        else:
            tokens = ctx.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
        return {"count": len(tokens), "max_model_len": ctx.max_model_len, "tokens": tokens}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        ctx.check_model(body.model)
        ctx.check_prompt_tokens(body.tokens)
        return {"prompt": ctx.tokenizer.decode(body.tokens)}

    @app.get("/metrics")
    async def metrics():
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    app.include_router(ollama_router(ollama))

    return app


def build_context(engine: AsyncLLMEngine, served_model_name: list[str] | None,
                  enable_auto_tool_choice: bool, tool_call_parser: str | None,
                  chat_template: str | None,
                  reasoning_parser: str | None = None,
                  mcp_config: str | None = None, tool_limits=None,
                  max_tool_rounds: int = 8) -> ServingContext:
    """`tool_limits` (callm.agents.tools.ToolLimits) and `max_tool_rounds` bound the
    `{"type": "mcp"}` tools the server runs for `mcp_config`'s servers."""
    from callm.entrypoints.chat_utils import load_chat_template
    from callm.metrics import Metrics

    core = engine.engine
    names = list(served_model_name or []) or [core.config.model]
    return ServingContext(
        engine=engine, model_names=names + [core.config.model], max_model_len=core.max_model_len,
        metrics=Metrics(core, names[0]),
        chat_template=load_chat_template(chat_template) if chat_template else None,
        enable_auto_tool_choice=enable_auto_tool_choice, tool_parser_name=tool_call_parser,
        reasoning_parser_name=reasoning_parser, mcp=_mcp_servers(mcp_config, tool_limits),
        tool_limits=tool_limits, max_tool_rounds=max_tool_rounds)


def _mcp_servers(mcp_config: str | None, limits):
    """The --mcp-config servers, started and listed (None without a config)."""
    if mcp_config is None:
        return None
    from callm.agents.mcp import MCPServers
    from callm.agents.tool_loop import BackgroundLoop

    return MCPServers(mcp_config, BackgroundLoop("callm-mcp"), limits=limits)
