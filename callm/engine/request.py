"""A request's state as it moves through the engine, and what the engine reports back.

A `Request` is one sequence: its tokens (prompt, then outputs), how many of them are in the KV
cache, its blocks, and its sampling and detokenizing state. It does not care whether it is in
"prefill" or "decode": each step computes some of its not-yet-computed tokens, and once all are
computed the step's logits give its next token. `n > 1` runs n sequences of one parent id.
"""

import enum
import time
from dataclasses import dataclass, field

from callm.engine.sampling_params import SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class CompletionOutput:
    """One of a request's n outputs, cumulative so far."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: list[dict] | None = None  # per token: {"token_id", "logprob", "top": [(id, lp)]}
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    stop_reason: str | int | None = None  # the stop string or stop token id that ended it
    tool_calls: list | None = None  # parsed by LLM.chat when a tool parser is set
    reasoning: str | None = None  # LLM.chat with a reasoning parser: the thought
    content: str | None = None  # LLM.chat with a tool or reasoning parser: the answer text

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    metrics: dict = field(default_factory=dict)  # arrival/first_token/finish times (s)


@dataclass(eq=False)
class Request:
    request_id: str  # the parent's id; `index` tells the n siblings apart
    index: int
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    sampling: object  # engine.sampler.SamplingState
    detokenizer: object  # engine.detokenizer.IncrementalDetokenizer
    eos_token_ids: frozenset[int] = frozenset()
    # engine.structured_output.GrammarMatcher when the output must follow a grammar; advanced
    # with every sampled token and never rolled back (preemption keeps the generated tokens)
    grammar: object | None = None
    token_ids: list[int] = field(default_factory=list)  # prompt + outputs
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0
    block_ids: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)  # chained hashes of full blocks
    num_committed_blocks: int = 0  # leading blocks already registered in the prefix cache
    status: RequestStatus = RequestStatus.WAITING
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    logprobs: list[dict] | None = None
    cumulative_logprob: float | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None
    finish_time: float | None = None

    def __post_init__(self):
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)
        if self.params.logprobs is not None:
            self.logprobs, self.cumulative_logprob = [], 0.0

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids):]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def completion_output(self) -> CompletionOutput:
        return CompletionOutput(self.index, self.detokenizer.text, self.output_token_ids,
                                self.cumulative_logprob,
                                list(self.logprobs) if self.logprobs is not None else None,
                                self.finish_reason, self.stop_reason)
