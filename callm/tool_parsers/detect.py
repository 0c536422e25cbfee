"""`--tool-call-parser auto`: which built-in parser reads the tool calls a chat template writes.

A chat template knows how its model writes tool calls: it has to render the calls of earlier
assistant turns back into the prompt the way the model wrote them. So the template is rendered
with a probe conversation -- a user message, then an assistant message with one call
(`get_weather {"city": "Paris"}`) or two (`get_time {"city": "Tokyo"}` after it), with
`tools=[get_weather, get_time]` -- and every built-in parser reads the assistant turn back. The
parsers that read exactly the probe's calls (same names, JSON-equal arguments, in order) match.

Rendering variants, each one skipped when the template raises on it: arguments as an object
(what `render_chat` hands templates, for `| tojson`) or as JSON text (for templates that
concatenate them), content absent or "", call ids of Mistral's 9 alphanumerics (`callm0000`) or
Kimi's `functions.NAME:IDX` (Kimi's template writes the id as the call's name). The assistant
turn is the rendering minus its common prefix with the user-only rendering, cut once after the
generation prompt and once before the assistant header (Harmony's header is part of the call),
and once more after a leading `<think>...</think>`.

When several parsers match, the most specific wins, by in order:

1. calls read by the parser's *canonical* format (`formats[0]`, what its grammar writes) rather
   than a fallback it accepts for drifting models (Hermes reads bare JSON lines, so it matches
   Llama 3's template; xLAM reads `[TOOL_CALLS]` lists, so it matches Mistral's);
2. more probe renderings read back;
3. less text left over as content (whitespace ignored): the parser whose markers the template
   writes explains more of the turn (Hermes reads `<longcat_tool_call>\\n{...}` as a bare JSON
   line and leaves the tags as content; `longcat` consumes them);
4. `TIE_PREFERENCE`, then the registry's order. Ties are parsers that read the probe the same
   way: `hermes` = `ernie45` (`<tool_call>` JSON), `jamba` = `hunyuan_a13b`, `pythonic` =
   `llama4_pythonic` (bare list). Aliases of one parser class are one candidate, named by the
   class's first built-in name (`hermes`, not `qwen25`).

Only built-in parsers are candidates by default: a plugin's parser may accept anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

AUTO = "auto"

# Names preferred when parsers read the probe equally well (see the module docstring).
TIE_PREFERENCE = ("hermes", "llama3_json", "mistral", "pythonic", "jamba", "qwen3_coder",
                  "glm45", "openai")

_STRING = {"type": "string"}
PROBE_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": _STRING},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Get the local time in a city",
        "parameters": {"type": "object", "properties": {"city": _STRING},
                       "required": ["city"]}}},
]
PROBE_USER = "What's the weather like in Paris?"
PROBE_CALLS: tuple[tuple[tuple[str, dict], ...], ...] = (
    (("get_weather", {"city": "Paris"}),),
    (("get_weather", {"city": "Paris"}), ("get_time", {"city": "Tokyo"})),
)
_ID_STYLES = (lambda name, i: f"callm{i:04d}",  # Mistral: 9 alphanumerics
              lambda name, i: f"functions.{name}:{i}")  # Kimi: the id is what the model writes
_THINK = re.compile(r"\s*<think>.*?</think>\s*", re.S)


@dataclass
class Probe:
    """One rendering of the probe: the calls it holds and candidate cuts of its assistant turn."""

    calls: tuple[tuple[str, dict], ...]
    turns: tuple[str, ...]


@dataclass
class _Score:
    canonical: int = 0  # probes read by the parser's first format alone
    matched: int = 0  # probes read by the parser
    leftover: int = 0  # non-whitespace content left over, summed over matched probes
    example: str = ""  # the assistant turn of the first probe it read

    def key(self) -> tuple[int, int, int]:
        return (self.canonical, self.matched, -self.leftover)


@dataclass
class Detection:
    """The chosen parser name, why, and the other parsers that also read the probe."""

    name: str
    reason: str
    also: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- rendering

def _render(tokenizer, template: str, messages: list[dict], add_generation_prompt: bool,
            args_as_text: bool = False) -> str:
    from callm.entrypoints.chat_utils import normalize_messages

    msgs = normalize_messages(messages, template)
    if args_as_text:
        for m in msgs:
            for call in m.get("tool_calls") or ():
                args = call["function"].get("arguments")
                if not isinstance(args, str):
                    call["function"]["arguments"] = json.dumps(args, ensure_ascii=False)
    text = tokenizer.apply_chat_template(msgs, tools=PROBE_TOOLS, chat_template=template,
                                         tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, not text")
    return text


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _turn_cuts(full: str, prefixes: Sequence[str]) -> tuple[str, ...]:
    """Candidate texts of the assistant turn in `full` (deduplicated, in order)."""
    cuts = [full[_common_prefix(full, p):] for p in prefixes]
    if not cuts:  # the user-only renderings failed: everything after the user's text
        at = full.rfind(PROBE_USER)
        cuts.append(full[at + len(PROBE_USER):] if at >= 0 else full)
    for cut in list(cuts):
        thought = _THINK.match(cut)
        if thought and thought.group().strip():
            cuts.append(cut[thought.end():])
    return tuple(dict.fromkeys(c for c in cuts if c.strip()))


def render_probes(tokenizer, chat_template: str | os.PathLike | None = None
                  ) -> tuple[list[Probe], list[str]]:
    """The probe renderings of the template (see the module docstring), and the errors of the
    variants the template refused. ValueError when there is no template at all."""
    from callm.entrypoints.chat_utils import _resolve_template

    try:
        template = _resolve_template(tokenizer, chat_template, PROBE_TOOLS)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 -- e.g. a tokenizer without Jinja templates
        raise ValueError(f"no chat template ({_error_text(e)})") from None
    user = {"role": "user", "content": PROBE_USER}
    errors: list[str] = []
    prefixes = []
    for add_generation_prompt in (True, False):
        try:
            prefixes.append(_render(tokenizer, template, [user], add_generation_prompt))
        except Exception as e:  # noqa: BLE001 -- any template failure skips the variant
            errors.append(_error_text(e))
    probes: dict[tuple, Probe] = {}
    for calls in PROBE_CALLS:
        for make_id in _ID_STYLES:
            for content in (None, ""):
                for args_as_text in (False, True):
                    assistant = {"role": "assistant", "content": content, "tool_calls": [
                        {"id": make_id(name, i), "type": "function",
                         "function": {"name": name, "arguments": json.dumps(args)}}
                        for i, (name, args) in enumerate(calls)]}
                    try:
                        full = _render(tokenizer, template, [user, assistant], False,
                                       args_as_text)
                    except Exception as e:  # noqa: BLE001
                        errors.append(_error_text(e))
                        continue
                    turns = _turn_cuts(full, prefixes)
                    if turns:
                        probes.setdefault((json.dumps(calls), turns), Probe(calls, turns))
    return list(probes.values()), errors


def _error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------- reading back

def builtin_candidates() -> list[tuple[str, type]]:
    """(name, class) for each built-in parser class, named by its first built-in name."""
    from callm.tool_parsers import _BUILTIN_PARSERS, ToolParserManager

    seen: dict[type, str] = {}
    for name in _BUILTIN_PARSERS:
        try:
            cls = ToolParserManager.get_tool_parser(name)
        except (KeyError, ImportError, AttributeError) as e:
            logger.debug("tool parser %s not loadable for detection: %s", name, e)
            continue
        seen.setdefault(cls, name)
    return [(name, cls) for cls, name in seen.items()]


def _probe_request(tools: Sequence[dict] | None = None):
    from callm.entrypoints.openai.protocol import ChatCompletionRequest

    return ChatCompletionRequest(messages=[{"role": "user", "content": PROBE_USER}],
                                 tools=list(tools or PROBE_TOOLS))


def _leftover(parser: Any, text: str, calls: Sequence[tuple[str, dict]], request) -> int | None:
    """Non-whitespace characters of content left when `parser` reads exactly `calls` from
    `text`; None when it reads anything else (or fails)."""
    try:
        info = parser.extract_tool_calls(text, request)
        got = [(c.function.name, json.loads(c.function.arguments or "{}"))
               for c in info.tool_calls]
    except Exception:  # noqa: BLE001 -- a parser that fails does not match
        return None
    if not info.tools_called or got != [(name, args) for name, args in calls]:
        return None
    return len("".join((info.content or "").split()))


def _canonical_only(cls: type) -> type | None:
    """`cls` restricted to its first format, or None when that is `cls` itself (one format, or
    not a declarative parser)."""
    from callm.tool_parsers import FormatToolParser

    if not (isinstance(cls, type) and issubclass(cls, FormatToolParser)) or len(cls.formats) < 2:
        return None
    return type(f"{cls.__name__}Canonical", (cls,), {"formats": cls.formats[:1]})


def _score(cls: type, tokenizer, probes: Sequence[Probe], request) -> _Score | None:
    try:
        parser = cls(tokenizer)
        canonical_cls = _canonical_only(cls)
        canonical = canonical_cls(tokenizer) if canonical_cls is not None else None
    except Exception as e:  # noqa: BLE001
        logger.debug("tool parser %s not constructible for detection: %s", cls.__name__, e)
        return None
    score = _Score()
    for probe in probes:
        read = [(left, turn) for turn in probe.turns
                if (left := _leftover(parser, turn, probe.calls, request)) is not None]
        if not read:
            continue
        left, turn = min(read, key=lambda r: r[0])
        score.matched += 1
        score.leftover += left
        score.example = score.example or turn
        if canonical is None or any(_leftover(canonical, t, probe.calls, request) is not None
                                    for t in probe.turns):
            score.canonical += 1
    return score if score.matched else None


def rank_parsers(probes: Sequence[Probe], tokenizer=None,
                 candidates: Iterable[tuple[str, type]] | None = None,
                 tools: Sequence[dict] | None = None) -> list[tuple[str, _Score]]:
    """The candidates that read some probe back, best first (see the module docstring);
    `tools`: the request's tools the parsers see (default: the probe's)."""
    candidates = list(builtin_candidates() if candidates is None else candidates)
    order = {name: i for i, (name, _) in enumerate(candidates)}
    preference = {name: i for i, name in enumerate(TIE_PREFERENCE)}
    request = _probe_request(tools)
    scored = [(name, s) for name, cls in candidates
              if (s := _score(cls, tokenizer, probes, request)) is not None]
    scored.sort(key=lambda ns: (tuple(-k for k in ns[1].key()),
                                preference.get(ns[0], len(preference)), order[ns[0]]))
    return scored


def _snippet(text: str, limit: int = 160) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def explain_tool_parser(tokenizer, chat_template: str | os.PathLike | None = None,
                        candidates: Iterable[tuple[str, type]] | None = None) -> Detection:
    """Like `detect_tool_parser`, with the reason and the runners-up."""
    candidates = list(builtin_candidates() if candidates is None else candidates)
    tried = ", ".join(name for name, _ in candidates)
    try:
        probes, errors = render_probes(tokenizer, chat_template)
    except ValueError as e:
        raise ValueError(f"cannot detect the tool-call format: {e}. Name the parser "
                         f"(--tool-call-parser / tool_call_parser=); known: {tried}") from None
    ranked = rank_parsers(probes, tokenizer, candidates)
    if not ranked:
        if probes:
            seen = f"its assistant turn with calls renders as {_snippet(probes[0].turns[0])}"
        elif errors:
            seen = f"it failed to render an assistant tool call ({errors[-1]})"
        else:
            seen = "it renders no assistant tool call"
        raise ValueError(
            "cannot detect the tool-call format from the chat template: none of the tried "
            f"parsers reads back the tool calls it writes ({seen}). Tried: {tried}. Name the "
            "parser (--tool-call-parser / tool_call_parser=) or give a chat template that "
            "renders assistant tool_calls.")
    name, best = ranked[0]
    ties = [n for n, s in ranked[1:] if s.key() == best.key()]
    how = "in its own format" if best.canonical else "only through a fallback form it accepts"
    reason = (f"the chat template writes an assistant tool call as {_snippet(best.example)}, "
              f"which {name} reads back exactly, {how}")
    if ties:
        reason += f" (as do {', '.join(ties)}; {name} is preferred)"
    return Detection(name, reason, [n for n, _ in ranked[1:]])


def detect_tool_parser(tokenizer, chat_template: str | os.PathLike | None = None,
                       candidates: Iterable[tuple[str, type]] | None = None) -> str:
    """The registered name of the built-in tool parser that reads back the tool calls the chat
    template renders (`chat_template` as `render_chat` takes it; None: the tokenizer's own).
    ValueError naming the tried parsers when none does."""
    detection = explain_tool_parser(tokenizer, chat_template, candidates)
    logger.info("tool-call parser auto: using %s: %s", detection.name, detection.reason)
    return detection.name


def resolve_tool_parser(name: str | None, tokenizer, chat_template: str | os.PathLike | None,
                        *, required: bool = True) -> str | None:
    """`name` unless it is None or "auto"; then the detected parser. When detection fails:
    ValueError if `required`, else None (logged)."""
    if name and name != AUTO:
        return name
    try:
        return detect_tool_parser(tokenizer, chat_template)
    except ValueError as e:
        if required:
            raise
        logger.info("no tool-call parser detected (tool_choice auto parses nothing; required "
                    "and named functions use the Hermes encoding): %s", e)
        return None
