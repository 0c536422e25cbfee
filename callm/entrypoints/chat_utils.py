"""Chat-template rendering with tools, and Python function -> OpenAI tool schema.

Rendering goes through transformers' `apply_chat_template` (its sandboxed Jinja environment,
`tojson`, `raise_exception`), so a model's own template behaves here as it does everywhere else.
What this module adds is the normalisation OpenAI-style inputs need before a template sees them:

- content-part lists become one string (text parts joined with "\\n", as vLLM does): every text
  template accepts a string, many (SmolLM2's, Qwen2.5's) break on a list, and callm's models are
  text-only, so image/audio parts are refused;
- assistant `tool_calls[].function.arguments` (JSON text on the wire) become objects, because
  templates write `arguments | tojson`; text that is not JSON stays as it is;
- `developer` becomes `system` for templates that do not know it (Qwen2.5 silently drops it);
  legacy `function_call` / `function` messages become `tool_calls` / `tool` messages; a `tool`
  message without `name` gets the name of the call it answers (some templates print it).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jinja2
import pydantic

__all__ = [
    "HERMES_TOOLS_TEMPLATE_PATH",
    "render_chat",
    "load_chat_template",
    "default_chat_template",
    "normalize_messages",
    "normalize_tools",
    "function_to_tool",
]

HERMES_TOOLS_TEMPLATE_PATH = Path(__file__).with_name("templates") / "hermes_tools.jinja"

# apply_chat_template's own parameters: as template variables they would change what it returns.
_RESERVED_KWARGS = frozenset({
    "conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
    "continue_final_message", "tokenize", "sanitize_control_tokens", "padding", "truncation",
    "max_length", "return_tensors", "return_dict", "return_assistant_tokens_mask",
    "tokenizer_kwargs"})


# --------------------------------------------------------------------------- templates

def load_chat_template(chat_template: str | os.PathLike) -> str:
    """A template given inline or as a file path (anything without `{` and with no newline is a
    path). Servers call this once at startup instead of reading the file per request."""
    if isinstance(chat_template, os.PathLike) or ("{" not in chat_template
                                                  and "\n" not in chat_template):
        try:
            return Path(chat_template).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"chat template {str(chat_template)!r} is not a Jinja template and "
                             f"cannot be read as a file: {e.strerror or e}") from None
    return chat_template


@lru_cache(maxsize=None)
def _hermes_template() -> str:
    return HERMES_TOOLS_TEMPLATE_PATH.read_text(encoding="utf-8")


def default_chat_template(tokenizer, model_name_or_path: str | os.PathLike | None = None
                          ) -> str | None:
    """Our ChatML + Hermes tools template when the model's template ignores `tools` (SmolLM2),
    else None: use the model's own. Only for ChatML models (`<|im_start|>` in the template or
    vocabulary): on any other format our template would change the prompt the model learned.

    `model_name_or_path` is there for per-model overrides; today the tokenizer alone decides.
    """
    del model_name_or_path
    own = tokenizer.chat_template
    if isinstance(own, dict):  # named templates: the one used with tools wins
        own = own.get("tool_use") or own.get("default")
    if own and "tools" in own:
        return None
    chatml = "<|im_start|>" in (own or "") or "<|im_start|>" in tokenizer.get_added_vocab()
    return _hermes_template() if chatml else None


def _resolve_template(tokenizer, chat_template: str | os.PathLike | None, tools) -> str:
    own = tokenizer.chat_template
    if isinstance(own, dict) and isinstance(chat_template, str) and chat_template in own:
        return own[chat_template]  # a named template of the tokenizer
    if chat_template is not None:
        return load_chat_template(chat_template)
    try:
        return tokenizer.get_chat_template(None, tools)
    except ValueError as e:
        raise ValueError(f"no chat template: the tokenizer has none and none was given ({e})"
                         ) from None


# --------------------------------------------------------------------------- messages, tools

def _text(content: Any, role: str) -> Any:
    """Content-part lists -> one string; anything else unchanged."""
    if not isinstance(content, list):
        return content
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and part.get("type", "text") in ("text", "refusal"):
            texts.append(part.get("text", part.get("refusal", "")))
        else:
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise ValueError(f"{role} message content part of type {kind!r} is not supported: "
                             "callm models read text only")
    return "\n".join(texts)


def _call(call: Mapping) -> dict:
    """A tool call with its JSON-text arguments parsed, so templates can `tojson` them."""
    call = dict(call)
    fn = dict(call.get("function") or {})
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            fn["arguments"] = json.loads(args) if args.strip() else {}
        except ValueError:
            pass  # the model once wrote broken JSON; show it as it was
    call["function"] = fn
    return call


def normalize_messages(messages: Iterable[Any], template: str = "") -> list[dict]:
    """OpenAI messages (dicts or our pydantic models) -> the plain dicts templates expect."""
    out: list[dict] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name, to name tool results
    for m in messages:
        if isinstance(m, pydantic.BaseModel):
            m = m.model_dump(exclude_none=True)
        elif not isinstance(m, Mapping):
            raise ValueError(f"a chat message must be a dict or a message model, got {m!r}")
        msg = {k: v for k, v in m.items() if v is not None}
        role = msg.get("role")
        if not isinstance(role, str):
            raise ValueError(f"chat message without a role: {dict(m)!r}")
        if role == "developer" and "developer" not in template:
            msg["role"] = role = "system"
        elif role == "function":  # legacy result of a function_call
            msg["role"] = role = "tool"
        if "content" in msg:
            msg["content"] = _text(msg["content"], role)
        if role == "assistant":
            thought = msg.pop("reasoning", None) or msg.get("reasoning_content")
            if thought:  # templates name an earlier turn's thought differently
                msg["reasoning_content"] = msg["thinking"] = thought
            if "function_call" in msg and not msg.get("tool_calls"):
                msg["tool_calls"] = [{"type": "function", "function": msg.pop("function_call")}]
            if msg.get("tool_calls"):
                msg["tool_calls"] = [_call(c) for c in msg["tool_calls"]]
                for c in msg["tool_calls"]:
                    if c.get("id") and c["function"].get("name"):
                        call_names[c["id"]] = c["function"]["name"]
            else:
                msg.pop("tool_calls", None)
                msg.setdefault("content", "")  # templates concatenate it
        elif role == "tool" and "name" not in msg and msg.get("tool_call_id") in call_names:
            msg["name"] = call_names[msg["tool_call_id"]]
        out.append(msg)
    return out


def normalize_tools(tools: Iterable[Any] | None) -> list[dict] | None:
    """OpenAI tool dicts, tool models, bare function definitions or Python functions -> tool
    dicts; None for no tools, so `{% if tools %}` templates skip their tools block."""
    out = []
    for t in tools or ():
        if isinstance(t, pydantic.BaseModel):
            t = t.model_dump(exclude_none=True)
        elif callable(t) and not isinstance(t, Mapping):
            t = function_to_tool(t)
        elif not isinstance(t, Mapping):
            raise ValueError(f"a tool must be a dict, a tool model or a function, got {t!r}")
        if "function" not in t and "name" in t:  # a bare function definition
            t = {"type": "function", "function": t}
        out.append(dict(t))
    return out or None


# --------------------------------------------------------------------------- rendering

def render_chat(tokenizer, messages: Iterable[Any], tools: Iterable[Any] | None = None,
                chat_template: str | os.PathLike | None = None, add_generation_prompt: bool = True,
                continue_final_message: bool = False,
                chat_template_kwargs: Mapping[str, Any] | None = None) -> str:
    """The prompt text for `messages` (and `tools`) under `chat_template` (inline, a file path,
    a named template of the tokenizer, or None for the tokenizer's own). Every failure -- bad
    messages, a missing or broken template, one that raises on an unsupported role -- is a
    ValueError whose message can go back to the client."""
    kwargs = dict(chat_template_kwargs or {})
    if bad := sorted(_RESERVED_KWARGS.intersection(kwargs)):
        raise ValueError(f"chat_template_kwargs must not set {', '.join(bad)}")
    tools = normalize_tools(tools)
    template = _resolve_template(tokenizer, chat_template, tools)
    msgs = normalize_messages(messages, template)
    if not msgs:
        raise ValueError("no messages to render")
    try:
        return tokenizer.apply_chat_template(
            msgs, tools=tools, chat_template=template, tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, **kwargs)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"chat template syntax error at line {e.lineno}: {e.message}") from None
    except (jinja2.TemplateError, TypeError, ValueError, LookupError, AttributeError) as e:
        raise ValueError(f"chat template failed to render: {e}") from None


# --------------------------------------------------------------------------- functions -> tools

_SECTION = re.compile(r"^(args|arguments|parameters|params|keyword args|returns?|yields?|raises|"
                      r"examples?|notes?|attributes|see also|warnings?|todo)\s*:\s*$", re.I)
_REF = re.compile(r'"\$ref": "#/\$defs/([^"]+)"')
_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {arg: description}) from a Google-style docstring."""
    description: list[str] = []
    args: dict[str, list[str]] = {}
    section, current, indent = None, None, None
    for line in doc.splitlines():
        stripped = line.strip()
        if _SECTION.match(stripped) and not line[:1].isspace():
            section, current, indent = stripped.rstrip(":").strip().lower(), None, None
            continue
        if section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters", "params", "keyword args") and stripped:
            depth = len(line) - len(line.lstrip())
            match = _ARG.match(stripped)
            if match and (indent is None or depth <= indent):
                indent, current = depth, match.group(1)
                args[current] = [match.group(2).strip()]
            elif current is not None:
                args[current].append(stripped)  # a continuation line
    return ("\n".join(description).strip(),
            {k: " ".join(filter(None, v)) for k, v in args.items()})


def _tidy(node: Any, defs: Mapping[str, Any], expanding: tuple[str, ...] = ()) -> Any:
    """Drop pydantic's titles and inline `$ref`s (a recursive one stays a ref): the schema is
    read by a small model in its prompt, and by grammar compilers."""
    if isinstance(node, list):
        return [_tidy(x, defs, expanding) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/") and (name := ref[len("#/$defs/"):]) not in expanding:
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _tidy(merged, defs, expanding + (name,))
    out = {}
    for key in sorted(node, key=lambda k: (k != "type", k != "description")):  # readable order
        value = node[key]
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "patternProperties", "$defs"):  # maps of names to schemas
            out[key] = {k: _tidy(v, defs, expanding) for k, v in value.items()}
        elif key in ("default", "enum", "const", "examples"):  # data, not schemas
            out[key] = value
        else:
            out[key] = _tidy(value, defs, expanding)
    return out


def function_to_tool(fn: Callable) -> dict:
    """An OpenAI tool dict for a type-hinted Python function; descriptions come from its
    Google-style docstring (summary, and `Args:` entries).

    Parameter schemas come from pydantic rather than `transformers.utils.get_json_schema`:
    pydantic's is standard JSON Schema (transformers writes OpenAPI's `"nullable": true`, which
    JSON Schema validators ignore, so `None` fails validation), covers enums, models,
    TypedDicts and nested containers, and does not refuse a function whose docstring leaves an
    argument undescribed.
    """
    if not callable(fn) or not getattr(fn, "__name__", None):
        raise ValueError(f"function_to_tool needs a named function, got {fn!r}")
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as e:
        raise ValueError(f"cannot read the signature of {fn.__name__}: {e}") from None
    description, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    fields: dict[str, Any] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(f"{fn.__name__}: *{name} has no JSON-schema form")
        if name not in hints:
            raise ValueError(f"{fn.__name__}: parameter {name!r} has no type hint")
        default = ... if p.default is p.empty else p.default
        # Field names are aliased: a parameter may be called `json` or `schema` (BaseModel's).
        fields[f"p{i}"] = (hints[name], pydantic.Field(default, alias=name,
                                                        description=arg_docs.get(name)))
    try:
        model = pydantic.create_model(fn.__name__, **fields)
        schema = model.model_json_schema(by_alias=True)
    except pydantic.PydanticUserError as e:
        raise ValueError(f"{fn.__name__}: a parameter type has no JSON schema: {e}") from None
    defs = schema.pop("$defs", {})
    parameters = _tidy(schema, defs)
    kept: dict[str, Any] = {}  # recursive types keep the definitions they still refer to
    while missing := set(_REF.findall(json.dumps([parameters, kept]))) - kept.keys():
        kept.update({k: _tidy(defs[k], defs, (k,)) for k in missing})
    if kept:
        parameters["$defs"] = kept
    parameters.setdefault("properties", {})
    function: dict[str, Any] = {"name": fn.__name__}
    if description:
        function["description"] = description
    function["parameters"] = parameters
    return {"type": "function", "function": function}
