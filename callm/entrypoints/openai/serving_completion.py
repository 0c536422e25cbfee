"""POST /v1/completions: plain text completion of one or several prompts."""

import asyncio
from collections.abc import AsyncIterator

from callm.entrypoints.openai.protocol import (CompletionLogProbs, CompletionRequest,
                                               CompletionResponse, CompletionResponseChoice,
                                               CompletionStreamResponse, ErrorInfo,
                                               ErrorResponse, UsageInfo)
from callm.entrypoints.openai.serving_common import (
    FINISH_REASONS, APIError, RequestTimer, ServingContext, random_id, sampling_params)


class OpenAIServingCompletion:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx

    async def create(self, request: CompletionRequest, is_disconnected):
        ctx = self.ctx
        model = ctx.check_model(request.model)
        if request.suffix:
            raise APIError("suffix is not supported", param="suffix")
        prompts = self._prompts(request.prompt)
        request_id = random_id("cmpl-")
        streams, texts = [], []
        for k, prompt in enumerate(prompts):
            ids = prompt if isinstance(prompt, list) else ctx.tokenizer.encode(prompt)
            ctx.check_prompt_tokens(ids)
            texts.append(prompt if isinstance(prompt, str) else ctx.tokenizer.decode(ids))
            params = sampling_params(request, len(ids), ctx, logprobs=request.logprobs)
            streams.append(ctx.engine.generate(ids, params, f"{request_id}-{k}",
                                               add_special_tokens=False))
        try:
            firsts = [await anext(s) for s in streams]
        except ValueError as e:
            for s in streams:
                await s.aclose()
            from callm.engine.structured_output import StructuredOutputError

            param = "structured_outputs" if isinstance(e, StructuredOutputError) else "prompt"
            raise APIError(str(e), param=param) from None
        if request.stream:
            return self._stream(request, request_id, model, texts, firsts, streams)
        finals = await asyncio.gather(*[_last(f, s, is_disconnected)
                                        for f, s in zip(firsts, streams)])
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for k, final in enumerate(finals):
            prompt_tokens += len(final.prompt_token_ids)
            for out in final.outputs:
                completion_tokens += len(out.token_ids)
                text = (texts[k] if request.echo else "") + out.text
                choices.append(CompletionResponseChoice(
                    index=k * request.n + out.index, text=text,
                    logprobs=self._logprobs(out.logprobs) if request.logprobs is not None else None,
                    finish_reason=FINISH_REASONS[out.finish_reason]))
            RequestTimer().report(ctx, final)
        return CompletionResponse(id=request_id, model=model, choices=choices,
                                  usage=UsageInfo(prompt_tokens=prompt_tokens,
                                                  completion_tokens=completion_tokens,
                                                  total_tokens=prompt_tokens + completion_tokens))

    @staticmethod
    def _prompts(prompt) -> list[str | list[int]]:
        if isinstance(prompt, str):
            return [prompt]
        if prompt and isinstance(prompt[0], int):
            return [list(prompt)]
        return list(prompt)

    async def _stream(self, request, request_id, model, texts, firsts,
                      streams) -> AsyncIterator[str]:
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(k, first, stream):
            try:
                await queue.put((k, first))
                async for output in stream:
                    await queue.put((k, output))
            except Exception as e:
                await queue.put((k, e))
            finally:
                await queue.put((k, None))

        tasks = [asyncio.create_task(pump(k, f, s)) for k, (f, s) in
                 enumerate(zip(firsts, streams))]
        sent: dict[tuple[int, int], int] = {}  # (prompt, choice) -> characters sent
        tokens: dict[tuple[int, int], int] = {}
        prompt_tokens = 0
        open_streams = len(tasks)
        try:
            while open_streams:
                k, item = await queue.get()
                if item is None:
                    open_streams -= 1
                    continue
                if isinstance(item, Exception):
                    error = ErrorResponse(error=ErrorInfo(message=str(item), type="server_error"))
                    yield f"data: {error.model_dump_json()}\n\n"
                    continue
                if item.finished:
                    prompt_tokens += len(item.prompt_token_ids)
                for out in item.outputs:
                    key = (k, out.index)
                    start = sent.get(key)
                    prefix = texts[k] if request.echo and start is None else ""
                    delta = out.text[start or 0:]
                    logprobs = None
                    if request.logprobs is not None and out.logprobs:
                        logprobs = self._logprobs(out.logprobs[tokens.get(key, 0):])
                    sent[key], tokens[key] = len(out.text), len(out.token_ids)
                    finish = FINISH_REASONS[out.finish_reason] if out.finished else None
                    if not (prefix or delta or finish or logprobs):
                        continue
                    chunk = CompletionStreamResponse(id=request_id, model=model, choices=[
                        CompletionResponseChoice(index=k * request.n + out.index,
                                                 text=prefix + delta, logprobs=logprobs,
                                                 finish_reason=finish)])
                    yield f"data: {chunk.model_dump_json()}\n\n"
        finally:
            for task in tasks:
                task.cancel()
            for stream in streams:
                await stream.aclose()
        if request.stream_options and request.stream_options.include_usage:
            completion = sum(tokens.values())
            usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion,
                              total_tokens=prompt_tokens + completion)
            chunk = CompletionStreamResponse(id=request_id, model=model, choices=[], usage=usage)
            yield f"data: {chunk.model_dump_json()}\n\n"
        yield "data: [DONE]\n\n"

    def _logprobs(self, entries: list[dict]) -> CompletionLogProbs:
        decode = self.ctx.tokenizer.decode
        result, offset = CompletionLogProbs(), 0
        for e in entries:
            token = decode([e["token_id"]])
            result.tokens.append(token)
            result.token_logprobs.append(e["logprob"])
            result.text_offset.append(offset)
            result.top_logprobs.append({decode([t]): lp for t, lp in e["top"]} or None)
            offset += len(token)
        return result


async def _last(first, stream, is_disconnected):
    final = first
    async for final in stream:
        if await is_disconnected():
            await stream.aclose()
            raise APIError("client disconnected", 499)
    return final
