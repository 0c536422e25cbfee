"""The one chat pipeline every front end uses (OpenAI, Ollama, offline `LLM`).

`ChatPipeline.prepare` turns a normalized chat request into what the engine runs: the rendered
prompt, the tool-choice plan (which parser reads calls, which grammar forces them), the merged
output constraint — held back until the thought ends when the model reasons — and the thinking
budget. `ChoiceReader` turns one choice's output into reasoning, content and tool calls, either
whole or as deltas whose accumulation equals the whole. Front ends only translate wire formats.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from callm.entrypoints.chat_utils import render_chat
from callm.entrypoints.openai.protocol import (ChatCompletionNamedToolChoiceParam,
                                               ChatCompletionRequest, DeltaFunctionCall,
                                               DeltaMessage, DeltaToolCall, ToolCall)
from callm.tool_parsers.grammar import (ToolChoicePlan, ToolChoiceUnsupported, merge_constraints,
                                        plan_tool_choice)
from callm.tool_parsers.json_prefix import close_json


class ChatRequestError(ValueError):
    """The request cannot be served as asked; `param` names the field at fault."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class PreparedChat:
    request: ChatCompletionRequest  # after the tool parser's adjust_request
    prompt: str
    tools: ToolChoicePlan
    structured_outputs: object = None  # StructuredOutputsParams | None
    reasoning_kwargs: dict = field(default_factory=dict)  # for the reasoning parser
    thinking_budget: object = None  # a logits processor, or None


@dataclass
class ChatResult:
    """One choice, whole."""

    reasoning: str | None
    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str


class ChatPipeline:
    """Everything between a chat request and the engine, and between the engine's text and
    the reply. `tool_parser_cls`/`reasoning_parser_cls` are the model's (None: none);
    `parse_auto`: whether calls are parsed under tool_choice "auto"."""

    def __init__(self, tokenizer, chat_template: str | None, tool_parser_cls=None,
                 reasoning_parser_cls=None, parse_auto: bool = True):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.tool_parser_cls = tool_parser_cls
        self.reasoning_parser_cls = reasoning_parser_cls
        self.parse_auto = parse_auto

    def prepare(self, request: ChatCompletionRequest, own_constraint=None) -> PreparedChat:
        """Render and plan `request`; `own_constraint` is its response_format /
        structured_outputs. ChatRequestError on anything the client must fix."""
        try:
            plan = self._plan_tools(request)
        except ToolChoiceUnsupported as e:  # the parser's format cannot be forced
            raise ChatRequestError(str(e), "tool_choice") from None
        if plan.parser_cls is not None:
            request = plan.parser_cls(self.tokenizer).adjust_request(request)
        try:
            constraint = merge_constraints(own_constraint, plan.structured_outputs)
        except ValueError as e:
            raise ChatRequestError(str(e), "response_format") from None
        template_kwargs = dict(request.chat_template_kwargs or {})
        if request.reasoning_effort is not None:
            template_kwargs.setdefault("reasoning_effort", request.reasoning_effort)
        try:
            prompt = render_chat(self.tokenizer, request.messages, tools=request.tools,
                                 chat_template=request.chat_template or self.chat_template,
                                 add_generation_prompt=request.add_generation_prompt,
                                 continue_final_message=request.continue_final_message,
                                 chat_template_kwargs=template_kwargs)
        except ValueError as e:
            raise ChatRequestError(str(e), "messages") from None
        prepared = PreparedChat(request, prompt, plan, constraint)
        if self.reasoning_parser_cls is not None:
            prepared.reasoning_kwargs = {
                "chat_template_kwargs": template_kwargs, "prompt": prompt,
                "interrupts": _call_markers(plan.parser_cls or self.tool_parser_cls)}
            self._plan_reasoning(prepared)
        elif request.thinking_token_budget is not None:
            raise ChatRequestError("thinking_token_budget needs a model served with "
                                   "--reasoning-parser", "thinking_token_budget")
        return prepared

    def reader(self, prepared: PreparedChat) -> "ChoiceReader":
        return ChoiceReader(self, prepared)

    # ----- planning -----

    def _plan_tools(self, request: ChatCompletionRequest) -> ToolChoicePlan:
        """Which parser reads the calls and which grammar forces them (OpenAI/vLLM semantics):
        required/named are written by a grammar in the parser's own format (the Hermes
        encoding when there is no parser); auto parses only when `parse_auto`."""
        choice = request.tool_choice
        if not request.tools or choice == "none":
            return ToolChoicePlan()
        if choice == "required" or isinstance(choice, ChatCompletionNamedToolChoiceParam):
            return plan_tool_choice(request, self.tool_parser_cls)
        if self.parse_auto and self.tool_parser_cls is not None:
            return plan_tool_choice(request, self.tool_parser_cls)
        if "tool_choice" in request.model_fields_set:  # asked for "auto" explicitly
            raise ChatRequestError('"auto" tool choice requires --enable-auto-tool-choice (with '
                                   "--tool-call-parser NAME, or auto to detect it from the chat "
                                   "template)", "tool_choice")
        return ToolChoicePlan()  # tools only shown to the model, as vLLM does

    def _plan_reasoning(self, prepared: PreparedChat) -> None:
        """A thinking model thinks freely: any constraint applies from the end of its thought,
        and a thinking budget forces that end."""
        from callm.reasoning.budget import ThinkingBudget, after_thought

        fmt = getattr(self.reasoning_parser_cls, "format", None)
        if fmt is None:  # a hand-written plugin: nothing declarative to build on
            if prepared.request.thinking_token_budget is not None:  # not silently unbounded
                raise ChatRequestError(
                    f"thinking_token_budget needs a reasoning parser that declares its "
                    f"ReasoningFormat; {self.reasoning_parser_cls.__name__} does not",
                    "thinking_token_budget")
            return
        kwargs = prepared.reasoning_kwargs
        thinking = fmt.thinking(kwargs["chat_template_kwargs"])
        opened = thinking and fmt.opened_in(prepared.prompt)
        constraint = prepared.structured_outputs
        # (a request may name only a backend: nothing to hold after the thought)
        if constraint is not None and constraint.kind is not None and thinking:
            try:
                prepared.structured_outputs = after_thought(prepared.structured_outputs, fmt,
                                                            opened, kwargs["interrupts"])
            except ValueError as e:
                raise ChatRequestError(str(e), "response_format") from None
        budget = prepared.request.thinking_token_budget
        if budget is not None and thinking:
            prepared.thinking_budget = ThinkingBudget(self.tokenizer, fmt, budget, opened,
                                                      kwargs["interrupts"])


class ChoiceReader:
    """One choice's output -> reasoning, content and tool calls: `feed` the text so far and
    `finish` for deltas, or `whole` for the complete result."""

    def __init__(self, pipeline: ChatPipeline, prepared: PreparedChat):
        self.tokenizer = pipeline.tokenizer
        self.prepared = prepared
        request = prepared.request
        self.request = request
        reasoning_cls = pipeline.reasoning_parser_cls
        self.reasoning = (reasoning_cls(self.tokenizer, **prepared.reasoning_kwargs)
                          if reasoning_cls is not None else None)
        parser_cls = prepared.tools.parser_cls
        self.tools = parser_cls(self.tokenizer) if parser_cls is not None else None
        self.text = ""  # the whole output so far
        self.content = ""  # what followed the thought so far (what the tool parser reads)
        self.reasoning_text = ""
        self.arguments: dict[int, str] = {}  # streamed arguments per call

    # ----- whole -----

    def whole(self, text: str, finish_reason: str) -> ChatResult:
        reasoning, content = None, text
        if self.reasoning is not None:
            reasoning, content = self.reasoning.extract_reasoning(text, self.request)
            content = content or ""
        self.reasoning_text = reasoning or ""
        calls: list[ToolCall] = []
        if self.tools is not None:
            info = self.tools.extract_tool_calls(content, self.request)
            if info.tools_called:
                calls = info.tool_calls if self.request.parallel_tool_calls else info.tool_calls[:1]
                content = info.content
                if finish_reason != "length":  # only a call cut off by max_tokens stays partial
                    for call in calls:
                        call.function.arguments = close_json(call.function.arguments)
        return ChatResult(reasoning, content or None, calls, self._finish(finish_reason, calls))

    # ----- streamed -----

    def feed(self, text: str, token_ids: Sequence[int] = ()) -> DeltaMessage | None:
        """The output so far (it extends what was fed before): what became certain."""
        previous, self.text = self.text, text
        if self.reasoning is None:
            return self._content_delta(text[len(previous):], token_ids)
        split = self.reasoning.extract_reasoning_streaming(previous, text, text[len(previous):],
                                                           [], token_ids, [])
        return self._after_reasoning(split, token_ids)

    def finish(self, finish_reason: str) -> tuple[DeltaMessage | None, str]:
        """The output is complete: the last delta (held-back text, closed arguments) and the
        choice's finish reason."""
        delta = None
        if self.reasoning is not None:
            delta = self._after_reasoning(self.reasoning.finish_streaming(), ())
        if self.tools is not None:
            delta = merge_deltas(delta, self._calls_only(self.tools.finish_streaming(self.request)))
            if finish_reason != "length":  # as the whole response: arguments closed
                closing = []
                for index, args in sorted(self.arguments.items()):
                    closed = close_json(args)
                    if closed != args:
                        self.arguments[index] = closed
                        closing.append(DeltaToolCall(index=index, function=DeltaFunctionCall(
                            arguments=closed[len(args):])))
                if closing:
                    delta = merge_deltas(delta, DeltaMessage(tool_calls=closing))
        return delta, self._finish(finish_reason, self.arguments)

    def _after_reasoning(self, split: DeltaMessage | None, token_ids) -> DeltaMessage | None:
        if split is None:
            return None
        delta = None
        if split.reasoning_content:
            self.reasoning_text += split.reasoning_content
            delta = DeltaMessage(reasoning_content=split.reasoning_content)
        if split.content:
            delta = merge_deltas(delta, self._content_delta(split.content, token_ids))
        return delta

    def _content_delta(self, piece: str, token_ids) -> DeltaMessage | None:
        """New answer text through the tool parser (if any)."""
        if not piece:
            return None
        previous, self.content = self.content, self.content + piece
        if self.tools is None:
            return DeltaMessage(content=piece)
        delta = self.tools.extract_tool_calls_streaming(previous, self.content, piece, [],
                                                        token_ids, [], self.request)
        return self._calls_only(delta)

    def _calls_only(self, delta: DeltaMessage | None) -> DeltaMessage | None:
        """Apply parallel_tool_calls=false and record streamed arguments."""
        if delta is None or not delta.tool_calls:
            return delta
        if not self.request.parallel_tool_calls:
            delta.tool_calls = [tc for tc in delta.tool_calls if tc.index == 0]
            if not delta.tool_calls and delta.content is None:
                return None
        for tc in delta.tool_calls:
            fragment = tc.function.arguments if tc.function else None
            self.arguments[tc.index] = self.arguments.get(tc.index, "") + (fragment or "")
        return delta

    # ----- both -----

    def _finish(self, finish_reason: str, calls) -> str:
        """"tool_calls" only when calls were returned (a named function says "stop", as
        OpenAI does)."""
        if calls and finish_reason == "stop":
            return self.prepared.tools.finish_reason
        return finish_reason

    def reasoning_tokens(self, token_ids: Sequence[int]) -> int:
        """How many of the output's `token_ids` the thought took: the shortest prefix whose text
        holds the whole thought. (Encoding the thought's text again counts other tokens than
        the model wrote — more, for a model that spells words in pieces.)"""
        if not self.reasoning_text:
            return 0
        ids = list(token_ids)
        target = len(self.reasoning_text)

        def complete(k: int) -> bool:
            text = self.tokenizer.decode(ids[:k], skip_special_tokens=False)
            reasoning, _ = self.reasoning.extract_reasoning(text, self.request)
            return len(reasoning or "") >= target

        if not complete(len(ids)):  # the text is not the ids' (cannot happen in the engine)
            return min(len(ids), len(self.tokenizer.encode(self.reasoning_text,
                                                            add_special_tokens=False)))
        low, high = 1, len(ids)
        while low < high:
            middle = (low + high) // 2
            if complete(middle):
                high = middle
            else:
                low = middle + 1
        return high


def _call_markers(parser_cls) -> list[str]:
    """The literal markers that open a tool call in `parser_cls`'s formats: met inside an
    unclosed thought, they end it."""
    markers = []
    for fmt in getattr(parser_cls, "formats", ()):
        markers += [m for m in (fmt.region_start, fmt.call_start) if m]
    return sorted(set(markers))


def merge_deltas(a: DeltaMessage | None, b: DeltaMessage | None) -> DeltaMessage | None:
    if a is None or b is None:
        return a or b
    return DeltaMessage(reasoning_content=_join(a.reasoning_content, b.reasoning_content),
                        content=_join(a.content, b.content),
                        tool_calls=a.tool_calls + b.tool_calls)


def _join(a: str | None, b: str | None) -> str | None:
    return (a or "") + (b or "") or None


def with_params(params, prepared: PreparedChat):
    """`params` (SamplingParams) for this chat: marker tokens kept in the text when a parser
    reads them, the chat's constraint, the thinking budget."""
    changes = {"structured_outputs": prepared.structured_outputs}
    if prepared.tools.parser_cls is not None or prepared.reasoning_kwargs:
        changes["skip_special_tokens"] = False
    if prepared.thinking_budget is not None:
        changes["logits_processors"] = [*params.logits_processors, prepared.thinking_budget]
    return replace(params, **changes)
