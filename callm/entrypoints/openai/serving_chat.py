"""POST /v1/chat/completions: render the conversation (tools included), generate, and turn the
model's text into OpenAI content and tool calls — whole, or as SSE deltas whose accumulation
equals the whole response."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable

from callm.entrypoints.chat_utils import default_chat_template, render_chat
from callm.entrypoints.openai.protocol import (
    ChatCompletionLogProb, ChatCompletionLogProbs, ChatCompletionNamedToolChoiceParam,
    ChatCompletionRequest, ChatCompletionResponse, ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice, ChatCompletionStreamResponse, ChatCompletionTopLogProb,
    ChatMessage, DeltaFunctionCall, DeltaMessage, DeltaToolCall, ErrorInfo, ErrorResponse,
    UsageInfo)
from callm.entrypoints.openai.serving_common import (
    FINISH_REASONS, APIError, RequestTimer, ServingContext, random_id, sampling_params,
    structured_outputs_params)
from callm.tool_parsers import ToolParser, ToolParserManager
from callm.tool_parsers.detect import AUTO, resolve_tool_parser
from callm.tool_parsers.json_prefix import close_json
from callm.tool_parsers.grammar import (ToolChoicePlan, ToolChoiceUnsupported, merge_constraints,
                                        plan_tool_choice)


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

    async def create(self, request: ChatCompletionRequest,
                     is_disconnected: Callable[[], Awaitable[bool]]):
        """A ChatCompletionResponse, or an async iterator of SSE lines when streaming."""
        ctx = self.ctx
        model = ctx.check_model(request.model)
        try:
            plan = self._plan_tools(request)
        except ToolChoiceUnsupported as e:  # the parser's format cannot be forced
            raise APIError(str(e), param="tool_choice") from None
        if plan.parser_cls is not None:
            request = plan.parser_cls(ctx.tokenizer).adjust_request(request)
        try:
            constraint = merge_constraints(structured_outputs_params(request),
                                           plan.structured_outputs)
        except ValueError as e:
            raise APIError(str(e), param="response_format") from None
        try:
            prompt = render_chat(ctx.tokenizer, request.messages, tools=request.tools,
                                 chat_template=request.chat_template or self.default_template,
                                 add_generation_prompt=request.add_generation_prompt,
                                 continue_final_message=request.continue_final_message,
                                 chat_template_kwargs=request.chat_template_kwargs)
        except ValueError as e:
            raise APIError(str(e), param="messages") from None
        prompt_ids = ctx.tokenizer.encode(prompt, add_special_tokens=False)
        params = sampling_params(request, len(prompt_ids), ctx,
                                 logprobs=(request.top_logprobs or 0) if request.logprobs else None,
                                 structured_outputs=constraint)
        request_id = random_id("chatcmpl-")
        outputs = ctx.engine.generate(prompt_ids, params, request_id, add_special_tokens=False)
        timer = RequestTimer()
        try:
            first = await anext(outputs)
        except ValueError as e:
            raise APIError(str(e)) from None
        if request.stream:
            return self._stream(request, request_id, model, first, outputs, timer, plan)
        return await self._whole(request, request_id, model, first, outputs, timer, plan,
                                 is_disconnected)

    def _plan_tools(self, request: ChatCompletionRequest) -> ToolChoicePlan:
        """Which parser reads this request's tool calls and which grammar enforces them
        (OpenAI/vLLM semantics). "required" and named functions are written by a grammar in
        the --tool-call-parser's format (named or detected), or in the Hermes encoding (parsed
        by the Hermes parser) when there is none; "auto" parses only with
        --enable-auto-tool-choice, and then enforces `strict` tools once a call starts."""
        choice = request.tool_choice
        if not request.tools or choice == "none":
            return ToolChoicePlan()
        if choice == "required" or isinstance(choice, ChatCompletionNamedToolChoiceParam):
            return plan_tool_choice(request, self.parser_cls)
        if self.ctx.enable_auto_tool_choice and self.parser_cls is not None:
            return plan_tool_choice(request, self.parser_cls)
        if "tool_choice" in request.model_fields_set:  # asked for "auto" explicitly
            raise APIError('"auto" tool choice requires --enable-auto-tool-choice (with '
                           "--tool-call-parser NAME, or auto to detect it from the chat "
                           "template)", param="tool_choice")
        return ToolChoicePlan()  # tools only shown to the model, as vLLM does

    def _parser_name(self, plan: ToolChoicePlan) -> str:
        if plan.parser_cls is self.parser_cls and self.ctx.tool_parser_name:
            return self.ctx.tool_parser_name
        return "hermes"

    # ----- whole response -----

    async def _whole(self, request, request_id, model, first, outputs, timer, plan,
                     is_disconnected) -> ChatCompletionResponse:
        final = first
        timer.tokens_arrived(sum(len(o.token_ids) for o in first.outputs))
        async for final in outputs:
            if await is_disconnected():
                await outputs.aclose()  # aborts the request, freeing its KV blocks
                raise APIError("client disconnected", 499)
        timer.tokens_arrived(1)
        timer.report(self.ctx, final)
        choices = []
        for out in final.outputs:
            content, tool_calls, finish = out.text, [], FINISH_REASONS[out.finish_reason]
            if plan.parser_cls is not None:
                info = plan.parser_cls(self.ctx.tokenizer).extract_tool_calls(out.text, request)
                if finish != "length":  # only a call cut off by max_tokens stays partial
                    for call in info.tool_calls:
                        call.function.arguments = close_json(call.function.arguments)
                self._count_tool_calls(self._parser_name(plan),
                                       [c.function.arguments for c in info.tool_calls])
                if info.tools_called:
                    tool_calls = info.tool_calls if request.parallel_tool_calls else info.tool_calls[:1]
                    content = info.content
                    finish = plan.finish_reason if finish == "stop" else finish
            choices.append(ChatCompletionResponseChoice(
                index=out.index, message=ChatMessage(content=content, tool_calls=tool_calls),
                logprobs=self._logprobs(out.logprobs) if request.logprobs else None,
                finish_reason=finish))
        completion = sum(len(o.token_ids) for o in final.outputs)
        prompt = len(final.prompt_token_ids)
        return ChatCompletionResponse(id=request_id, model=model, choices=choices,
                                      usage=UsageInfo(prompt_tokens=prompt,
                                                      completion_tokens=completion,
                                                      total_tokens=prompt + completion))

    # ----- streamed response -----

    async def _stream(self, request, request_id, model, first, outputs, timer,
                      plan) -> AsyncIterator[str]:
        n = request.n
        parsers: list[ToolParser | None] = [
            plan.parser_cls(self.ctx.tokenizer) if plan.parser_cls else None for _ in range(n)]
        texts, token_ids = [""] * n, [[] for _ in range(n)]
        arguments: list[dict[int, str]] = [{} for _ in range(n)]  # per choice: call -> args
        done = [False] * n
        base = ChatCompletionStreamResponse(id=request_id, model=model, choices=[])

        def chunk(choices, usage=None) -> str:
            data = base.model_copy(update={"choices": choices, "usage": usage})
            return f"data: {data.model_dump_json()}\n\n"

        final = first
        try:
            for i in range(n):
                yield chunk([ChatCompletionResponseStreamChoice(
                    index=i, delta=DeltaMessage(role="assistant", content=""))])
            pending = [first]
            while True:
                for output in pending:
                    final = output
                    timer.tokens_arrived(sum(len(o.token_ids) - len(token_ids[o.index])
                                             for o in output.outputs))
                    for out in output.outputs:
                        i = out.index
                        if done[i]:
                            continue
                        choice = self._delta_choice(request, out, texts[i], token_ids[i],
                                                    parsers[i], arguments[i],
                                                    plan.finish_reason)
                        texts[i], token_ids[i] = out.text, out.token_ids
                        done[i] = out.finished
                        if choice is not None:
                            yield chunk([choice])
                if all(done):
                    break
                pending = [await anext(outputs)]
        except Exception as e:  # the engine failed mid-stream: say so in the stream
            error = ErrorResponse(error=ErrorInfo(message=str(e), type="server_error"))
            yield f"data: {error.model_dump_json()}\n\n"
        finally:
            await outputs.aclose()
        timer.report(self.ctx, final)
        if plan.parser_cls is not None:
            for args in arguments:
                self._count_tool_calls(self._parser_name(plan), list(args.values()))
        if request.stream_options and request.stream_options.include_usage:
            prompt = len(final.prompt_token_ids)
            completion = sum(len(t) for t in token_ids)
            yield chunk([], UsageInfo(prompt_tokens=prompt, completion_tokens=completion,
                                      total_tokens=prompt + completion))
        yield "data: [DONE]\n\n"

    def _delta_choice(self, request, out, previous_text, previous_ids, parser, arguments,
                      calls_finish_reason="tool_calls"):
        """The chunk for one choice's new output (None if nothing to send); `arguments`
        accumulates each streamed call's arguments for the metrics."""
        text, ids = out.text, out.token_ids
        delta_text, delta_ids = text[len(previous_text):], ids[len(previous_ids):]
        if parser is not None:
            delta = parser.extract_tool_calls_streaming(
                previous_text, text, delta_text, previous_ids, ids, delta_ids, request)
            if out.finished:
                delta = _merge(delta, parser.finish_streaming(request))
            if delta is not None and delta.tool_calls:
                if not request.parallel_tool_calls:
                    delta.tool_calls = [tc for tc in delta.tool_calls if tc.index == 0]
                    if not delta.tool_calls and delta.content is None:
                        delta = None
                for tc in delta.tool_calls if delta is not None else []:
                    fragment = tc.function.arguments if tc.function else None
                    arguments[tc.index] = arguments.get(tc.index, "") + (fragment or "")
        else:
            delta = DeltaMessage(content=delta_text) if delta_text else None
        logprobs = None
        if request.logprobs and out.logprobs:
            logprobs = self._logprobs(out.logprobs[len(previous_ids):])
        finish = None
        if out.finished:
            finish = FINISH_REASONS[out.finish_reason]
            if parser is not None and finish != "length":  # as the whole response: closed
                closing = []
                for index, text in sorted(arguments.items()):
                    closed = close_json(text)
                    if closed != text:
                        arguments[index] = closed
                        closing.append(DeltaToolCall(index=index, function=DeltaFunctionCall(
                            arguments=closed[len(text):])))
                if closing:
                    delta = _merge(delta, DeltaMessage(tool_calls=closing))
            if arguments and finish == "stop":
                finish = calls_finish_reason
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


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _merge(a: DeltaMessage | None, b: DeltaMessage | None) -> DeltaMessage | None:
    if a is None or b is None:
        return a or b
    content = (a.content or "") + (b.content or "")
    return DeltaMessage(content=content or None, tool_calls=a.tool_calls + b.tool_calls)
