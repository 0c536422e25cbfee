"""POST /v1/chat/completions: the OpenAI wire format around the chat pipeline
(`callm.entrypoints.chat`), which renders the conversation, plans tool choice and constraints,
and splits the output into reasoning, content and tool calls — whole, or as SSE deltas whose
accumulation equals the whole response."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from callm.engine.request import RequestOutput
from callm.entrypoints.chat import (ChatPipeline, ChatRequestError, PreparedChat, merge_deltas,
                                    with_params)
from callm.entrypoints.chat_utils import default_chat_template
from callm.entrypoints.openai.protocol import (
    ChatCompletionLogProb, ChatCompletionLogProbs, ChatCompletionRequest, ChatCompletionResponse,
    ChatCompletionResponseChoice, ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse, ChatCompletionTopLogProb, ChatMessage,
    CompletionTokensDetails, DeltaMessage, ErrorInfo, ErrorResponse, UsageInfo)
from callm.entrypoints.openai.serving_common import (
    FINISH_REASONS, APIError, RequestTimer, ServingContext, random_id, sampling_params,
    structured_outputs_params)
from callm.reasoning import ReasoningParserManager
from callm.reasoning.detect import resolve_reasoning_parser
from callm.tool_parsers import ToolParserManager
from callm.tool_parsers.detect import AUTO, resolve_tool_parser


class OpenAIServingChat:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx
        self.default_template = ctx.chat_template or default_chat_template(ctx.tokenizer)
        # "auto" (or no parser named) resolves once, here, from the chat template; it must
        # succeed when asked for or when auto tool choice needs it, else it may find nothing
        # (required/named then use the Hermes encoding).
        ctx.tool_parser_name = resolve_tool_parser(
            ctx.tool_parser_name, ctx.tokenizer, self.default_template,
            required=ctx.tool_parser_name == AUTO or ctx.enable_auto_tool_choice)
        self.parser_cls = (ToolParserManager.get_tool_parser(ctx.tool_parser_name)
                           if ctx.tool_parser_name else None)
        ctx.reasoning_parser_name = resolve_reasoning_parser(
            ctx.reasoning_parser_name, ctx.tokenizer, self.default_template)
        reasoning_cls = (ReasoningParserManager.get_reasoning_parser(ctx.reasoning_parser_name)
                         if ctx.reasoning_parser_name else None)
        self.pipeline = ChatPipeline(ctx.tokenizer, self.default_template, self.parser_cls,
                                     reasoning_cls, parse_auto=ctx.enable_auto_tool_choice)

    async def create(self, request: ChatCompletionRequest,
                     is_disconnected: Callable[[], Awaitable[bool]]):
        """A ChatCompletionResponse, or an async iterator of SSE lines when streaming."""
        if request.tools and any(t.type == "mcp" for t in request.tools):  # run server-side
            from callm.agents.server_loop import create_with_mcp

            return await create_with_mcp(self, request, is_disconnected)
        generation = await self.start(request)
        if request.stream:
            return self._stream(generation)
        return await self._whole(generation, is_disconnected)

    async def start(self, request: ChatCompletionRequest) -> "Generation":
        """Render the request and start it in the engine (its first output has arrived); an
        APIError when it cannot be served."""
        ctx = self.ctx
        model = ctx.check_model(request.model)
        try:
            prepared = self.pipeline.prepare(request, structured_outputs_params(request))
        except ChatRequestError as e:
            raise APIError(str(e), param=e.param) from None
        prompt_ids = ctx.tokenizer.encode(prepared.prompt, add_special_tokens=False)
        params = sampling_params(prepared.request, len(prompt_ids), ctx,
                                 logprobs=(request.top_logprobs or 0) if request.logprobs else None,
                                 structured_outputs=None)
        params = with_params(params, prepared)
        request_id = random_id("chatcmpl-")
        outputs = ctx.engine.generate(prompt_ids, params, request_id, add_special_tokens=False)
        timer = RequestTimer()
        try:
            first = await anext(outputs)
        except ValueError as e:
            raise APIError(str(e)) from None
        return Generation(prepared, request_id, model, first, outputs, timer, first)

    def _parser_name(self, prepared) -> str:
        if prepared.tools.parser_cls is self.parser_cls and self.ctx.tool_parser_name:
            return self.ctx.tool_parser_name
        return "hermes"

    # ----- whole response -----

    async def _whole(self, generation: "Generation", is_disconnected) -> ChatCompletionResponse:
        g = generation
        prepared, request_id, model, first, outputs, timer = (
            g.prepared, g.request_id, g.model, g.first, g.outputs, g.timer)
        request = prepared.request
        final = first
        timer.tokens_arrived(sum(len(o.token_ids) for o in first.outputs))
        async for final in outputs:
            if await is_disconnected():
                await outputs.aclose()  # aborts the request, freeing its KV blocks
                raise APIError("client disconnected", 499)
        timer.tokens_arrived(1)
        timer.report(self.ctx, final)
        choices, reasoning_tokens = [], 0
        for out in final.outputs:
            reader = self.pipeline.reader(prepared)
            result = reader.whole(out.text, FINISH_REASONS[out.finish_reason])
            reasoning_tokens += reader.reasoning_tokens(out.token_ids)
            if prepared.tools.parser_cls is not None:
                self._count_tool_calls(self._parser_name(prepared),
                                       [c.function.arguments for c in result.tool_calls])
            choices.append(ChatCompletionResponseChoice(
                index=out.index, message=ChatMessage(content=result.content,
                                                     tool_calls=result.tool_calls,
                                                     reasoning_content=result.reasoning),
                logprobs=self._logprobs(out.logprobs) if request.logprobs else None,
                finish_reason=result.finish_reason))
        completion = sum(len(o.token_ids) for o in final.outputs)
        return ChatCompletionResponse(id=request_id, model=model, choices=choices,
                                      usage=self._usage(len(final.prompt_token_ids), completion,
                                                        reasoning_tokens))

    def _usage(self, prompt: int, completion: int, reasoning_tokens: int) -> UsageInfo:
        details = (CompletionTokensDetails(reasoning_tokens=reasoning_tokens)
                   if self.pipeline.reasoning_parser_cls is not None else None)
        return UsageInfo(prompt_tokens=prompt, completion_tokens=completion,
                         total_tokens=prompt + completion, completion_tokens_details=details)

    # ----- streamed response -----

    async def _stream(self, generation: "Generation") -> AsyncIterator[str]:
        prepared = generation.prepared
        request = prepared.request
        n = request.n
        readers = [self.pipeline.reader(prepared) for _ in range(n)]
        token_ids = [[] for _ in range(n)]
        chunk = self.chunk_writer(generation)
        try:
            for i in range(n):
                yield chunk([ChatCompletionResponseStreamChoice(
                    index=i, delta=DeltaMessage(role="assistant", content=""))])
            async with aclosing(self.stream_choices(generation, readers, token_ids)) as choices:
                async for choice in choices:
                    yield chunk([choice])
        except Exception as e:  # the engine failed mid-stream: say so in the stream
            yield stream_error(e)
        generation.timer.report(self.ctx, generation.final)
        if prepared.tools.parser_cls is not None:
            for reader in readers:
                self._count_tool_calls(self._parser_name(prepared), list(reader.arguments.values()))
        if request.stream_options and request.stream_options.include_usage:
            yield chunk([], self._usage(len(generation.final.prompt_token_ids),
                                        sum(len(t) for t in token_ids),
                                        sum(r.reasoning_tokens(ids)
                                            for r, ids in zip(readers, token_ids))))
        yield "data: [DONE]\n\n"

    @staticmethod
    def chunk_writer(generation: "Generation") -> Callable[..., str]:
        """chunk(choices, usage=None, **fields) -> one SSE line of this stream."""
        base = ChatCompletionStreamResponse(id=generation.request_id, model=generation.model,
                                            choices=[])

        def chunk(choices, usage=None, **fields) -> str:
            data = base.model_copy(update={"choices": choices, "usage": usage, **fields})
            return f"data: {data.model_dump_json()}\n\n"

        return chunk

    async def stream_choices(self, generation: "Generation", readers, token_ids):
        """One chunk choice per choice that moved, as the engine produces output;
        `token_ids[i]` keeps choice i's tokens so far and `generation.final` the last output.
        Closing this generator early aborts the request (freeing its KV blocks)."""
        request = generation.prepared.request
        done = [False] * request.n
        try:
            pending = [generation.first]
            while True:
                for output in pending:
                    generation.final = output
                    generation.timer.tokens_arrived(sum(
                        len(o.token_ids) - len(token_ids[o.index]) for o in output.outputs))
                    for out in output.outputs:
                        i = out.index
                        if done[i]:
                            continue
                        choice = self._delta_choice(request, out, token_ids[i], readers[i])
                        token_ids[i] = out.token_ids
                        done[i] = out.finished
                        if choice is not None:
                            yield choice
                if all(done):
                    return
                pending = [await anext(generation.outputs)]
        finally:
            await generation.outputs.aclose()

    def _delta_choice(self, request, out, previous_ids, reader):
        """The chunk for one choice's new output (None if nothing to send)."""
        delta = reader.feed(out.text, out.token_ids)
        finish = None
        if out.finished:
            last, finish = reader.finish(FINISH_REASONS[out.finish_reason])
            delta = merge_deltas(delta, last)
        logprobs = None
        if request.logprobs and out.logprobs:
            logprobs = self._logprobs(out.logprobs[len(previous_ids):])
        if delta is None and finish is None and logprobs is None:
            return None
        return ChatCompletionResponseStreamChoice(index=out.index, delta=delta or DeltaMessage(),
                                                  logprobs=logprobs, finish_reason=finish)

    # ----- helpers -----

    def _logprobs(self, entries: list[dict]) -> ChatCompletionLogProbs:
        decode = self.ctx.tokenizer.decode

        def top(token_id, logprob):
            text = decode([token_id])
            return ChatCompletionTopLogProb(token=text, logprob=logprob,
                                            bytes=list(text.encode()))

        return ChatCompletionLogProbs(content=[
            ChatCompletionLogProb(**top(e["token_id"], e["logprob"]).model_dump(),
                                  top_logprobs=[top(t, lp) for t, lp in e["top"]])
            for e in entries])

    def _count_tool_calls(self, parser_name: str, arguments: list[str]) -> None:
        """A parse counts as failed when a call's arguments are not valid JSON."""
        failed = any(not _is_json(a) for a in arguments)
        self.ctx.metrics.tool_parse(parser_name, len(arguments), failed)


@dataclass
class Generation:
    """One started engine request of a chat completion; `final` is its latest output."""
    prepared: PreparedChat
    request_id: str
    model: str
    first: RequestOutput
    outputs: AsyncIterator[RequestOutput]
    timer: RequestTimer
    final: RequestOutput


def stream_error(e: Exception) -> str:
    """An error event inside an SSE stream (the status line has already gone out)."""
    message = e.message if isinstance(e, APIError) else str(e)
    kind = e.type if isinstance(e, APIError) else "server_error"
    error = ErrorResponse(error=ErrorInfo(message=message, type=kind))
    return f"data: {error.model_dump_json()}\n\n"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False
