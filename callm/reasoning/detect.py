"""`--reasoning-parser auto`: which built-in reasoning family a chat template belongs to.

The template is rendered twice: a user turn with the generation prompt (a template that opens
the thought there names its start marker), and an earlier assistant turn carrying a probe
thought (`reasoning_content`) and answer (a template that keeps thoughts in history writes
them with its markers). Each built-in family scores:

- 2 when its start marker opens a thought at the end of the generation prompt;
- 2 when, over the assistant turn, it splits off exactly the probe thought and answer;
- 1 when the template's text holds its markers (both, or only the end for families whose
  output always starts inside the thought, as DeepSeek-R1's template strips `</think>`).

The best score wins; among equals, the family with the longer markers (more specific), then
the registry's order (so `qwen3` speaks for the `<think>` families, which differ only in the
name of their thinking switch). No family scoring: ValueError naming those tried.
"""

import logging
import os

logger = logging.getLogger(__name__)

AUTO = "auto"
_THOUGHT, _ANSWER = "PROBE THOUGHT 7f3a", "PROBE ANSWER 9c1e"


def _candidates() -> list[tuple[str, type]]:
    """One (first built-in name, class) per declarative family."""
    from callm.reasoning import _BUILTIN_PARSERS, ReasoningParserManager

    seen, out = set(), []
    for name in _BUILTIN_PARSERS:
        cls = ReasoningParserManager.get_reasoning_parser(name)
        if cls not in seen and getattr(cls, "format", None) is not None:
            seen.add(cls)
            out.append((name, cls))
    return out


def _render(tokenizer, template, messages, add_generation_prompt: bool) -> str:
    from callm.entrypoints.chat_utils import render_chat

    try:
        return render_chat(tokenizer, messages, chat_template=template,
                           add_generation_prompt=add_generation_prompt)
    except ValueError:
        return ""


def detect_reasoning_parser(tokenizer, chat_template: str | os.PathLike | None = None) -> str:
    from callm.entrypoints.chat_utils import _resolve_template

    try:
        source = _resolve_template(tokenizer, chat_template, None) or ""
    except ValueError:
        source = ""
    user = [{"role": "user", "content": "hi"}]
    turn = [*user, {"role": "assistant", "content": _ANSWER, "reasoning_content": _THOUGHT},
            {"role": "user", "content": "and?"}]
    prompt = _render(tokenizer, chat_template, user, True)
    history = _render(tokenizer, chat_template, turn, False)
    assistant = history[history.find("hi") + 2:] if "hi" in history else history
    cut = assistant.find(_ANSWER)
    assistant = assistant[:cut + len(_ANSWER)] if cut >= 0 else assistant

    scored = []
    for order, (name, cls) in enumerate(_candidates()):
        fmt = cls.format
        score = 0
        if fmt.start and not fmt.always_opens and fmt.opened_in(prompt):
            score += 2
        if _THOUGHT in assistant:
            start = min((assistant.find(s) for s in (fmt.start, *fmt.start_variants)
                         if s and s in assistant), default=-1)
            if start >= 0:
                reasoning, content = cls(tokenizer).extract_reasoning(assistant[start:])
                if (reasoning or "").strip() == _THOUGHT and _ANSWER in (content or ""):
                    score += 2
        if fmt.end in source and (fmt.start in source or fmt.always_opens):
            score += 1
        if score:
            scored.append((score, len(fmt.start) + len(fmt.end), -order, name))
    if not scored:
        names = ", ".join(name for name, _ in _candidates())
        raise ValueError("--reasoning-parser auto: the chat template shows no thought markers "
                         f"of a known family (tried {names}); name a parser")
    best = max(scored)
    logger.info("reasoning parser %r detected from the chat template (score %d)", best[3],
                best[0])
    return best[3]


def resolve_reasoning_parser(name: str | None, tokenizer,
                             chat_template: str | os.PathLike | None) -> str | None:
    """The reasoning parser to use: `name`, or the detected one for "auto"."""
    if name != AUTO:
        return name
    return detect_reasoning_parser(tokenizer, chat_template)
