"""The offline `LLM`: batches of prompts or conversations through one continuous batch.

`LLM.chat` renders each conversation with the model's chat template (tools included), runs them
all together and returns outputs whose `tool_calls` are already parsed by the tool parser:
the same renderer, engine and parsers the server uses.
"""

import itertools
import os
from collections.abc import Callable, Sequence

from callm.config import EngineConfig
from callm.engine.llm_engine import LLMEngine
from callm.engine.request import RequestOutput
from callm.engine.sampling_params import SamplingParams


class LLM:
    def __init__(self, model: str | None = None, tool_call_parser: str | None = None,
                 chat_template: str | None = None, reasoning_parser: str | None = None,
                 mcp_config: "str | os.PathLike | dict | None" = None,
                 tool_limits=None, **engine_args):
        """`tool_limits` (callm.agents.ToolLimits): the per-call timeout and result-size cap of
        the tools `run_tools` runs, and the cap on concurrent MCP calls (defaults: 30 s,
        16 000 characters, 16 calls)."""
        config = EngineConfig(**({"model": model} if model else {}), chat_template=chat_template,
                              tool_call_parser=tool_call_parser, **engine_args)
        self.engine = LLMEngine(config)
        self.tokenizer = self.engine.tokenizer
        self._ids = itertools.count()
        self._detected: dict[str | None, str | ValueError] = {}  # chat template -> parser
        if reasoning_parser is not None:  # resolve "auto" and fail on unknown names now
            from callm.entrypoints.chat_utils import default_chat_template
            from callm.reasoning import ReasoningParserManager
            from callm.reasoning.detect import resolve_reasoning_parser

            reasoning_parser = resolve_reasoning_parser(
                reasoning_parser, self.tokenizer,
                chat_template or default_chat_template(self.tokenizer, config.model))
            ReasoningParserManager.get_reasoning_parser(reasoning_parser)
        self.reasoning_parser = reasoning_parser
        if tool_call_parser == "auto":  # detect (and log) now; a failure counts when needed
            from callm.entrypoints.chat_utils import default_chat_template

            self._detect(chat_template or default_chat_template(self.tokenizer, config.model))
        self._agents = None  # (BackgroundLoop, thread pool), made by the first run_tools
        self.tool_limits = tool_limits
        self.mcp = None  # MCPServers: the mcp_config servers, started and listed now
        if mcp_config is not None:
            from callm.agents.mcp import MCPServers

            self.mcp = MCPServers(mcp_config, self._agent_runtime()[0], limits=tool_limits)

    def shutdown(self) -> None:
        """Stop the engine's workers (tensor-parallel processes or Ray actors) and the MCP
        servers; also done at interpreter exit, and by `with LLM(...) as llm:`."""
        if getattr(self, "mcp", None) is not None:
            self.mcp.close()
            self.mcp = None
        if getattr(self, "_agents", None) is not None:
            loop, pool = self._agents
            pool.shutdown(wait=False, cancel_futures=True)
            loop.close()
            self._agents = None
        self.engine.shutdown()

    def _agent_runtime(self):
        """The event loop (a background thread) and thread pool that run tools."""
        if self._agents is None:
            from concurrent.futures import ThreadPoolExecutor

            from callm.agents.tool_loop import BackgroundLoop

            self._agents = (BackgroundLoop(), ThreadPoolExecutor(thread_name_prefix="callm-tool"))
        return self._agents

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def generate(self, prompts: str | Sequence[str] | Sequence[list[int]],
                 sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                 use_tqdm: bool = True) -> list[RequestOutput]:
        """Complete each prompt (text or token ids); outputs in the order of `prompts`."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        return self._run([(p, True) for p in prompts], sampling_params, use_tqdm)

    def chat(self, messages: Sequence[dict] | Sequence[Sequence[dict]],
             sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
             tools: Sequence[dict | Callable] | Sequence[Sequence[dict | Callable]] | None = None,
             tool_choice: str | dict | Sequence[str | dict] = "auto",
             chat_template: str | None = None, tool_call_parser: str | None = None,
             add_generation_prompt: bool = True, chat_template_kwargs: dict | None = None,
             use_tqdm: bool = True, parallel_tool_calls: bool = True,
             thinking_token_budget: int | None = None) -> list[RequestOutput]:
        """Answer one conversation or a list of them; with `tools`, each output's `tool_calls`
        holds the calls parsed from its text (None when the model called nothing), and with a
        reasoning parser its `reasoning` holds the thought and `content` the answer.

        `tools` and `tool_choice` are one for all conversations, or a list with one per
        conversation. `tool_choice` as in OpenAI: "auto", "none", "required" (at least one
        call; exactly one when `parallel_tool_calls` is False) or
        `{"type": "function", "function": {"name": F}}` (exactly one call of F).
        required/named are enforced by a grammar written in the tool parser's own format, so
        the arguments always match the tool's JSON Schema; `strict` tools are enforced the
        same way in auto mode once the model starts a call. A thinking model thinks first:
        constraints hold from the end of its thought, `thinking_token_budget` caps it."""
        from callm.entrypoints.chat_utils import function_to_tool

        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        per_conversation = bool(tools) and isinstance(tools[0], list | tuple)
        tool_lists = [[t if isinstance(t, dict) else function_to_tool(t) for t in ts or []]
                      for ts in (tools if per_conversation else [tools] * len(conversations))]
        choices = (list(tool_choice) if isinstance(tool_choice, list | tuple)
                   else [tool_choice] * len(conversations))
        if len(choices) != len(conversations) or len(tool_lists) != len(conversations):
            raise ValueError(f"{len(tool_lists)} tool lists and {len(choices)} tool choices for "
                             f"{len(conversations)} conversations")
        pipeline = self._chat_pipeline(tool_lists, choices, chat_template, tool_call_parser)
        params = self._per_prompt(sampling_params, len(conversations))
        prepared_chats, run_params = [], []
        for conversation, choice, tool_dicts, p in zip(conversations, choices, tool_lists, params):
            prepared, p = self._prepare_chat(
                pipeline, conversation, tool_dicts, choice, p, parallel_tool_calls,
                add_generation_prompt, chat_template_kwargs, thinking_token_budget)
            prepared_chats.append(prepared)
            run_params.append(p)
        outputs = self._run([(c.prompt, False) for c in prepared_chats], run_params, use_tqdm)
        for output, prepared in zip(outputs, prepared_chats):
            if prepared.tools.parser_cls is None and pipeline.reasoning_parser_cls is None:
                continue
            for completion in output.outputs:
                result = pipeline.reader(prepared).whole(completion.text,
                                                         completion.finish_reason)
                completion.reasoning, completion.content = result.reasoning, result.content
                completion.tool_calls = result.tool_calls or None
        return outputs

    def run_tools(self, messages: Sequence[dict] | Sequence[Sequence[dict]],
                  tools: Sequence[dict | Callable] | Sequence[Sequence[dict | Callable]] = (),
                  tool_callback: Callable[[str, dict], str] | None = None,
                  max_tool_rounds: int = 8,
                  sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                  tool_choice: str | dict | Sequence[str | dict] = "auto",
                  chat_template: str | None = None, tool_call_parser: str | None = None,
                  reset_tool_choice: bool = False,
                  chat_template_kwargs: dict | None = None, parallel_tool_calls: bool = True,
                  thinking_token_budget: int | None = None) -> "list[AgentResult]":
        """Chat with tools that callm runs: generate, run every call the model made, give it
        the results, and again, until it answers without calls or `max_tool_rounds` rounds of
        tools have run. One conversation or a list of them; all run through one continuous
        batch, and the engine keeps decoding the others while one's tools run.

        `tools` (one list for all conversations, or a list of lists, one per conversation):
        Python functions (sync, or async — awaited), run with the arguments the model
        wrote after checking them against the signature; OpenAI tool dicts, run by
        `tool_callback(name, arguments) -> str`; and every tool of the `mcp_config` servers.
        A tool that raises, an unknown tool, arguments that do not fit or a call past the
        `tool_limits` timeout become an error message the model reads as the tool result.
        `tool_choice` (as in `chat`, one or one per conversation) holds for every turn, so
        "required" or a named function keep calling until the rounds run out — unless
        `reset_tool_choice`, which makes every turn after a round of tools "auto" (force the
        first call, then let the model answer).
        Returns one `AgentResult` per conversation: `.content` (the final answer),
        `.messages` (the whole transcript), `.output`, `.rounds`, `.finish_reason`."""
        from callm.agents.tool_loop import run_tool_loop
        from callm.agents.tools import ToolBox

        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        per_conversation = bool(tools) and isinstance(tools[0], list | tuple)
        tool_lists = tools if per_conversation else [tools] * len(conversations)
        mcp_runners = self.mcp.runners() if self.mcp else None
        boxes = {}  # one ToolBox per distinct tool list
        for ts in tool_lists:
            if id(ts) not in boxes:
                boxes[id(ts)] = ToolBox(ts or (), tool_callback, mcp_runners, self.tool_limits)
        toolboxes = [boxes[id(ts)] for ts in tool_lists]
        choices = (list(tool_choice) if isinstance(tool_choice, list | tuple)
                   else [tool_choice] * len(conversations))
        if len(choices) != len(conversations) or len(toolboxes) != len(conversations):
            raise ValueError(f"{len(toolboxes)} tool lists and {len(choices)} tool choices for "
                             f"{len(conversations)} conversations")
        params = self._per_prompt(sampling_params, len(conversations))
        if any(p.n != 1 for p in params):
            raise ValueError("run_tools needs sampling_params with n=1")
        later = ["auto"] * len(choices) if reset_tool_choice else []  # after a round of tools
        box_tools = [box.tools for box in toolboxes]
        pipeline = self._chat_pipeline(box_tools + box_tools[:len(later)], choices + later,
                                       chat_template, tool_call_parser)

        def prepare(conversation, toolbox, choice, p):
            if reset_tool_choice and conversation[-1].get("role") == "tool":
                choice = "auto"
            return self._prepare_chat(pipeline, conversation, toolbox.tools, choice, p,
                                      parallel_tool_calls, True, chat_template_kwargs,
                                      thinking_token_budget)

        loop, pool = self._agent_runtime()
        return run_tool_loop(self.engine, pipeline, conversations, toolboxes, params, choices,
                             max_tool_rounds, loop, pool, prepare)

    def _chat_pipeline(self, tool_lists, choices, chat_template, tool_call_parser):
        """The ChatPipeline for conversations with these tools and tool choices."""
        from callm.entrypoints.chat import ChatPipeline
        from callm.entrypoints.chat_utils import default_chat_template
        from callm.reasoning import ReasoningParserManager

        template = (chat_template or self.engine.config.chat_template
                    or default_chat_template(self.tokenizer, self.engine.config.model))
        parser_cls = None
        if any(ts and c != "none" for ts, c in zip(tool_lists, choices)):
            # auto needs the model's parser; required/named fall back to the Hermes encoding
            parser_cls = self._tool_parser(tool_call_parser, template, required=any(
                ts and c == "auto" for ts, c in zip(tool_lists, choices)))
        reasoning_cls = (ReasoningParserManager.get_reasoning_parser(self.reasoning_parser)
                         if self.reasoning_parser else None)
        return ChatPipeline(self.tokenizer, template, parser_cls, reasoning_cls)

    @staticmethod
    def _prepare_chat(pipeline, conversation, tool_dicts, choice, params, parallel_tool_calls=True,
                      add_generation_prompt=True, chat_template_kwargs=None,
                      thinking_token_budget=None):
        """(PreparedChat, the SamplingParams the engine runs it with); ValueError when the
        request cannot be served."""
        from callm.entrypoints.chat import ChatRequestError, with_params
        from callm.entrypoints.openai.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(
            messages=list(conversation), tools=tool_dicts or None,
            tool_choice=choice if tool_dicts else None,
            parallel_tool_calls=parallel_tool_calls, add_generation_prompt=add_generation_prompt,
            chat_template_kwargs=chat_template_kwargs,
            thinking_token_budget=thinking_token_budget)
        try:
            prepared = pipeline.prepare(request, params.structured_outputs)
        except ChatRequestError as e:
            raise ValueError(str(e)) from None
        return prepared, with_params(params, prepared)

    def _tool_parser(self, name: str | None, template: str | None, required: bool = True):
        """The tool parser class: named, the engine's, or (None or "auto") the one that reads
        the calls the chat template writes (`callm.tool_parsers.detect`). When detection finds
        none: None if `required` is False (required/named calls then use the Hermes encoding),
        else ValueError naming the parsers tried."""
        from callm.tool_parsers import ToolParserManager
        from callm.tool_parsers.detect import AUTO

        name = name or self.engine.config.tool_call_parser
        if name is None or name == AUTO:
            found = self._detect(template)
            if isinstance(found, ValueError):
                if not required:
                    return None
                raise ValueError(f"tools were given with tool_choice auto: {found}")
            name = found
        return ToolParserManager.get_tool_parser(name)

    def _detect(self, template: str | None) -> str | ValueError:
        """The parser name detected for `template` (None: the tokenizer's own), or the
        detection error; once per template."""
        from callm.tool_parsers.detect import detect_tool_parser

        if template not in self._detected:
            try:
                self._detected[template] = detect_tool_parser(self.tokenizer, template)
            except ValueError as e:
                self._detected[template] = e
        return self._detected[template]

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


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="requests", disable=not enabled or total < 2, unit="req")
