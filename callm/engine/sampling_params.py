"""How one request wants its tokens chosen and when it stops: vLLM's `SamplingParams`.

Names, defaults and meanings follow vLLM so user code and OpenAI request fields map across
one to one. Validation happens at construction so a bad request fails at the API edge with a
message naming the field, never inside the engine loop. Importing this module does not import
torch (the API server builds these while validating requests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Temperatures below this mean greedy: dividing by ~0 would only overflow (vLLM's _SAMPLING_EPS).
GREEDY_EPS = 1e-5
MAX_LOGPROBS = 20  # OpenAI's top_logprobs limit

# (output_token_ids, logits[vocab]) -> logits[vocab]; may modify logits in place and return it.
LogitsProcessor = Callable[[list[int], "torch.Tensor"], "torch.Tensor"]

STRUCTURED_OUTPUT_KINDS = ("json", "json_object", "regex", "choice", "grammar", "structural_tag")
STRUCTURED_OUTPUT_BACKENDS = ("xgrammar", "llguidance", "outlines")


@dataclass
class StructuredOutputsParams:
    """A constraint on the whole output, enforced while decoding (vLLM's names).

    At most one of the constraint fields is set: `json` (a JSON Schema, dict or JSON text),
    `json_object` (any JSON object), `regex`, `choice` (one of these strings), `grammar` (Lark,
    or EBNF/GBNF when it contains `::=`), `structural_tag` (xgrammar's structural-tag JSON:
    what tool calls in a model's own format compile to). `backend` picks the grammar engine
    for this request ("xgrammar", "llguidance", "outlines"); None: the engine's default.
    Params with only `backend` set constrain nothing by themselves.
    """

    json: str | dict | None = None
    json_object: bool = False
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    structural_tag: str | dict | None = None
    backend: str | None = None

    def __post_init__(self):
        if isinstance(self.json, str):
            import json

            try:
                self.json = json.loads(self.json)
            except ValueError as e:
                raise ValueError(f"structured_outputs.json is not valid JSON: {e}") from None
        if self.json is not None and not isinstance(self.json, dict | bool):
            raise ValueError("structured_outputs.json must be a JSON Schema object")
        if self.choice is not None:
            self.choice = list(self.choice)
            if not self.choice or not all(isinstance(c, str) for c in self.choice):
                raise ValueError("structured_outputs.choice must be a non-empty list of strings")
        for name in ("regex", "grammar"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"structured_outputs.{name} must be a non-empty string")
        set_kinds = [k for k in STRUCTURED_OUTPUT_KINDS if getattr(self, k) not in (None, False)]
        if len(set_kinds) > 1:
            raise ValueError("structured_outputs takes one constraint, got "
                             + " and ".join(set_kinds))
        if self.backend is not None and self.backend not in STRUCTURED_OUTPUT_BACKENDS:
            raise ValueError(f"unknown structured outputs backend {self.backend!r}; use one of "
                             f"{', '.join(STRUCTURED_OUTPUT_BACKENDS)}")

    @property
    def kind(self) -> str | None:
        """Which constraint is set (None: none)."""
        return next((k for k in STRUCTURED_OUTPUT_KINDS if getattr(self, k) not in (None, False)),
                    None)

    def spec(self):
        """The constraint's value (a schema, a pattern, a list of choices, ...)."""
        return getattr(self, self.kind) if self.kind else None


@dataclass
class SamplingParams:
    """Sampling and stopping settings for one request (all its `n` sequences)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int | None = 16  # None: until the context is full
    min_tokens: int = 0
    stop: list[str] | str | None = field(default_factory=list)
    stop_token_ids: list[int] | None = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # top alternatives besides the sampled token; 0: sampled only
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logits_processors: list[LogitsProcessor] | None = field(default_factory=list)
    # a grammar the output must follow (JSON Schema, regex, choice, grammar, tool calls)
    structured_outputs: StructuredOutputsParams | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # room for later features

    def __post_init__(self):
        # Accept the shapes OpenAI requests use: a single stop string, nulls for empty lists.
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        else:
            self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids or [])
        self.logits_processors = list(self.logits_processors or [])
        if isinstance(self.structured_outputs, dict):
            self.structured_outputs = StructuredOutputsParams(**self.structured_outputs)
        self._validate()

    def _validate(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        if not isinstance(self.n, int) or self.n < 1:
            raise bad("n", "an integer >= 1")
        if not self.temperature >= 0:  # also rejects NaN
            raise bad("temperature", ">= 0")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "in (0, 1]")
        if not isinstance(self.top_k, int) or self.top_k < -1:
            raise bad("top_k", "an integer >= -1 (0 or -1 disables it)")
        if not 0 <= self.min_p <= 1:
            raise bad("min_p", "in [0, 1]")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise bad(name, "in [-2, 2]")
        if not self.repetition_penalty > 0:
            raise bad("repetition_penalty", "> 0")
        if self.seed is not None and not isinstance(self.seed, int):
            raise bad("seed", "an integer or None")
        if self.max_tokens is not None and (
            not isinstance(self.max_tokens, int) or self.max_tokens < 1
        ):
            raise bad("max_tokens", "an integer >= 1 or None")
        if not isinstance(self.min_tokens, int) or self.min_tokens < 0:
            raise bad("min_tokens", "an integer >= 0")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise bad("min_tokens", f"<= max_tokens ({self.max_tokens})")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise bad("stop", "a list of non-empty strings")
        if not all(isinstance(t, int) and t >= 0 for t in self.stop_token_ids):
            raise bad("stop_token_ids", "a list of token ids (integers >= 0)")
        if self.logprobs is not None and (
            not isinstance(self.logprobs, int) or not 0 <= self.logprobs <= MAX_LOGPROBS
        ):
            raise bad("logprobs", f"an integer in [0, {MAX_LOGPROBS}] or None")
        if not all(callable(p) for p in self.logits_processors):
            raise bad("logits_processors", "a list of callables")
        if self.structured_outputs is not None and \
                not isinstance(self.structured_outputs, StructuredOutputsParams):
            raise bad("structured_outputs", "a StructuredOutputsParams (or a dict of its fields)")

    @property
    def greedy(self) -> bool:
        """Argmax decoding: the temperature is too small to divide by."""
        return self.temperature < GREEDY_EPS
