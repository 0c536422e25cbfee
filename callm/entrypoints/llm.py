"""The offline `LLM`: batches of prompts or conversations through one continuous batch.

`LLM.chat` renders each conversation with the model's chat template (tools included), runs them
all together and returns outputs whose `tool_calls` are already parsed by the tool parser:
the same renderer, engine and parsers the server uses.
"""

import itertools
from collections.abc import Callable, Sequence

from callm.config import EngineConfig
from callm.engine.llm_engine import LLMEngine
from callm.engine.request import RequestOutput
from callm.engine.sampling_params import SamplingParams

# Markers a chat template writes when it teaches a model a tool-call format -> that format's
# parser; used when tools are passed and no parser was named.
TEMPLATE_PARSERS = (("<tool_call>", "hermes"), ("[TOOL_CALLS]", "mistral"),
                    ("<|python_tag|>", "llama3_json"))


class LLM:
    def __init__(self, model: str | None = None, tool_call_parser: str | None = None,
                 chat_template: str | None = None, **engine_args):
        config = EngineConfig(**({"model": model} if model else {}), chat_template=chat_template,
                              tool_call_parser=tool_call_parser, **engine_args)
        self.engine = LLMEngine(config)
        self.tokenizer = self.engine.tokenizer
        self._ids = itertools.count()

    def generate(self, prompts: str | Sequence[str] | Sequence[list[int]],
                 sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                 use_tqdm: bool = True) -> list[RequestOutput]:
        """Complete each prompt (text or token ids); outputs in the order of `prompts`."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        return self._run([(p, True) for p in prompts], sampling_params, use_tqdm)

    def chat(self, messages: Sequence[dict] | Sequence[Sequence[dict]],
             sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
             tools: Sequence[dict | Callable] | None = None, tool_choice: str | dict = "auto",
             chat_template: str | None = None, tool_call_parser: str | None = None,
             add_generation_prompt: bool = True, chat_template_kwargs: dict | None = None,
             use_tqdm: bool = True) -> list[RequestOutput]:
        """Answer one conversation or a list of them; with `tools`, each output's `tool_calls`
        holds the calls parsed from its text (None when the model called nothing)."""
        from callm.entrypoints.chat_utils import default_chat_template, function_to_tool, render_chat
        from callm.entrypoints.openai.protocol import ChatCompletionRequest

        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        tool_dicts = [t if isinstance(t, dict) else function_to_tool(t) for t in tools or []]
        template = (chat_template or self.engine.config.chat_template
                    or default_chat_template(self.tokenizer, self.engine.config.model))
        parser_cls = None
        if tool_dicts and tool_choice != "none":
            if tool_choice != "auto":
                raise ValueError(f"tool_choice={tool_choice!r} needs structured outputs, which "
                                 "this version does not have yet; use 'auto' or 'none'")
            parser_cls = self._tool_parser(tool_call_parser, template)
        rendered, requests = [], []
        for conversation in conversations:
            request = ChatCompletionRequest(messages=list(conversation), tools=tool_dicts or None,
                                            tool_choice=tool_choice if tool_dicts else None)
            if parser_cls is not None:
                request = parser_cls(self.tokenizer).adjust_request(request)
            requests.append(request)
            prompt = render_chat(self.tokenizer, request.messages, tools=tool_dicts or None,
                                 chat_template=template,
                                 add_generation_prompt=add_generation_prompt,
                                 chat_template_kwargs=chat_template_kwargs)
            rendered.append((prompt, False))
        params = self._per_prompt(sampling_params, len(rendered))
        if parser_cls is not None:  # keep marker tokens in the text for the parser
            params = [_with(p, skip_special_tokens=r.skip_special_tokens)
                      for p, r in zip(params, requests)]
        outputs = self._run(rendered, params, use_tqdm)
        if parser_cls is not None:
            for output, request in zip(outputs, requests):
                for completion in output.outputs:
                    info = parser_cls(self.tokenizer).extract_tool_calls(completion.text, request)
                    completion.tool_calls = info.tool_calls if info.tools_called else None
        return outputs

    def _tool_parser(self, name: str | None, template: str | None):
        from callm.tool_parsers import ToolParserManager

        name = name or self.engine.config.tool_call_parser
        if name is None:
            template = template or getattr(self.tokenizer, "chat_template", None) or ""
            name = next((p for marker, p in TEMPLATE_PARSERS if marker in template), None)
        if name is None:
            raise ValueError("tools were given but no tool_call_parser was set, and the chat "
                             "template does not show which format the model writes")
        return ToolParserManager.get_tool_parser(name)

    @staticmethod
    def _per_prompt(sampling_params, count: int) -> list[SamplingParams]:
        if sampling_params is None or isinstance(sampling_params, SamplingParams):
            return [sampling_params or SamplingParams()] * count
        if len(sampling_params) != count:
            raise ValueError(f"{len(sampling_params)} sampling params for {count} prompts")
        return list(sampling_params)

    def _run(self, prompts: list[tuple], sampling_params, use_tqdm: bool) -> list[RequestOutput]:
        params = self._per_prompt(sampling_params, len(prompts))
        order = {}
        try:
            for (prompt, add_special), p in zip(prompts, params):
                request_id = str(next(self._ids))
                self.engine.add_request(request_id, prompt, p, add_special_tokens=add_special)
                order[request_id] = len(order)
        except ValueError:
            self.engine.abort_request(list(order))
            raise
        results: list[RequestOutput | None] = [None] * len(prompts)
        bar = _progress(len(prompts), use_tqdm)
        while self.engine.has_unfinished_requests():
            for output in self.engine.step():
                if output.finished:
                    results[order[output.request_id]] = output
                    bar.update(1)
        bar.close()
        return results


def _with(params: SamplingParams, **changes) -> SamplingParams:
    from dataclasses import replace

    return replace(params, **changes)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="requests", disable=not enabled or total < 2, unit="req")
