"""Structured outputs: grammars that constrain decoding, behind one interface.

A request's `SamplingParams.structured_outputs` (JSON Schema, any JSON object, regex, choice,
grammar, or a structural tag — what tool calls in a model's native format compile to, see
`callm.tool_parsers.grammar`) is compiled once per (backend, constraint) by the engine's
`StructuredOutputManager`, built once per model from its tokenizer. Each sequence gets a
`GrammarMatcher`; every step the manager fills one token bitmask for the batch's grammar rows
(each backend fills its rows in one call), applies it to their logits in one vectorised
operation, and the engine advances each matcher with the token it sampled.

Backends (`--structured-outputs-backend`, or per request `structured_outputs.backend`):

| backend | json / json_object / regex / choice | grammar | structural tag (tool calls) |
|---|---|---|---|
| xgrammar (default) | yes | EBNF (`::=`) or Lark | yes, natively (triggered tags, dispatch, XML/DSL styles) |
| llguidance | yes | Lark, or GBNF (`::=`) | yes, converted to Lark (lazy lexemes) |
| outlines (outlines-core) | yes; number bounds not enforced | no | required/named only |

Tool calls in a model's own markup (see `callm.tool_parsers.grammar`): a `json_schema` node in
one of xgrammar's styles (e.g. `gemma`, `minimax_m3_xml`) compiles with xgrammar; llguidance
and outlines compile the node's `portable` form instead (the same markup from plain nodes) or,
where it has none, answer a StructuredOutputError naming xgrammar. Free text up to a tag's end
(a markup string value) is a lazy lexeme that cannot contain the tag's excluded markers in
llguidance, and a run of characters that open none of them in outlines (so no `<` where the
markers start with one).

(outlines-core also allows no token that runs past a point where the output could end unless
the token ends at another such point: once one complete call is written under tool_choice
required, only EOS is left — parallel calls are cut to one — and a choice like ["yes",
"yesterday"] can only end at "yes".)

JSON whitespace is never free (small models otherwise write hundreds of spaces): every
backend writes `{"a": 1, "b": [2, 3]}` exactly (`, ` and `: `, nothing else).

Compiling happens when a request is added (on the engine thread; a bad schema or grammar is a
ValueError there, which the server answers with 400), once per distinct constraint: the LRU
cache (`cache_size` entries) serves repeats, e.g. the same tools on every request.

A sequence ends when its grammar allows nothing but the end of output (the manager reports
those rows before sampling and the engine finishes them with "stop"), or when it samples EOS
where the grammar allows it (free text in `auto` tool mode). Matchers are never fed EOS.

Preemption in callm frees a request's KV blocks and recomputes them later; its generated tokens
are kept, so a matcher's state stays valid across preemption and is never rolled back. The
interface still offers `rollback(n)` (speculative decoding, tests).

Bitmask application: the bitmask is unpacked with numpy (`unpackbits`, little bit order = token
order) and applied with one `torch.where` over the grammar rows; rows whose mask allows every
token (free text) are skipped. On this CPU that is ~20 µs per 49k-vocabulary row for a typical
sparse mask, 5-8x faster than xgrammar's CPU kernel (which does win on all-ones masks, the case
skipped here). The bitmask spans the model's vocabulary (the logits' width), which may be wider
than the tokenizer's: ids past the tokenizer are never allowed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np
import torch

from callm.engine.sampling_params import STRUCTURED_OUTPUT_BACKENDS, StructuredOutputsParams

logger = logging.getLogger(__name__)

DEFAULT_BACKEND = "xgrammar"
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "
_NEG_INF = torch.tensor(float("-inf"))


class StructuredOutputError(ValueError):
    """The constraint cannot be compiled (a bad schema or grammar, or a feature the backend
    lacks); the server answers 400 with this message."""


def _describe(kind: str) -> str:
    return {"json": "JSON schema", "json_object": "JSON object constraint", "regex": "regex",
            "choice": "choice", "grammar": "grammar",
            "structural_tag": "structural tag"}.get(kind, kind)


_CPP_PREFIX = re.compile(r"^\[[\d:]+\] \S+?:\d+: (Check failed: .*? is false: )?")


def _clean(error: BaseException) -> str:
    """An engine error without the C++ source location."""
    text = str(error).strip() or type(error).__name__
    return _CPP_PREFIX.sub("", text).strip()


# --------------------------------------------------------------------------- interface

class GrammarMatcher:
    """One sequence's position in its grammar."""

    backend: GrammarBackend

    def accept_token(self, token_id: int) -> bool:
        """Advance by one sampled token; False (state unchanged or failed) if not allowed."""
        raise NotImplementedError

    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens."""
        raise NotImplementedError


class GrammarBackend:
    """One grammar engine bound to one tokenizer (its token facts are built once)."""

    name = ""
    kinds: tuple[str, ...] = ()  # constraint kinds it compiles

    def __init__(self, vocab: TokenizerFacts):
        self.vocab = vocab

    def compile(self, kind: str, spec: Any) -> Any:
        """A compiled grammar; raises StructuredOutputError."""
        raise NotImplementedError

    def matcher(self, compiled: Any) -> GrammarMatcher:
        raise NotImplementedError

    def fill_bitmask(self, matchers: list[GrammarMatcher], bitmask: torch.Tensor,
                     rows: list[int]) -> None:
        """Write matcher i's allowed tokens into bitmask row rows[i] (int32, 32 tokens a word,
        bit j of word k = token 32k + j)."""
        raise NotImplementedError


class TokenizerFacts:
    """What every backend needs to know about the tokenizer; expensive parts built lazily and
    once (per model)."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids):
        self.tokenizer = tokenizer
        self.vocab_size = max(vocab_size, len(tokenizer))  # the logits' width
        self.stop_token_ids = sorted(set(stop_token_ids))
        self._xgr_info = None

    @property
    def words(self) -> int:
        return (self.vocab_size + 31) // 32

    def xgrammar_info(self):
        if self._xgr_info is None:
            import xgrammar as xgr

            self._xgr_info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids)
        return self._xgr_info

    def special_token_ids(self) -> set[int]:
        tok = self.tokenizer
        ids = set(getattr(tok, "all_special_ids", []) or [])
        for token_id, added in (getattr(tok, "added_tokens_decoder", None) or {}).items():
            if getattr(added, "special", False):
                ids.add(int(token_id))
        return ids


# --------------------------------------------------------------------------- xgrammar

def _xgrammar_structural_tag(node, json_grammar):
    """Replace json_schema nodes by grammar nodes whose JSON has no free whitespace (xgrammar's
    own json_schema node allows any whitespace)."""
    if isinstance(node, list):
        return [_xgrammar_structural_tag(n, json_grammar) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "json_schema":
        if node.get("style", "json") == "json":
            return {"type": "grammar", "grammar": json_grammar(node["json_schema"])}
        return {k: v for k, v in node.items() if k != "portable"}  # xgrammar writes the style
    return {k: _xgrammar_structural_tag(v, json_grammar) for k, v in node.items()}


class _XGrammarMatcher(GrammarMatcher):
    __slots__ = ("backend", "m")

    def __init__(self, backend, compiled):
        import xgrammar as xgr

        self.backend = backend
        self.m = xgr.GrammarMatcher(compiled, max_rollback_tokens=-1)

    def accept_token(self, token_id: int) -> bool:
        return self.m.accept_token(token_id)

    def rollback(self, num_tokens: int) -> None:
        self.m.rollback(num_tokens)


class XGrammarBackend(GrammarBackend):
    name = "xgrammar"
    kinds = ("json", "json_object", "regex", "choice", "grammar", "structural_tag")

    def __init__(self, vocab: TokenizerFacts):
        super().__init__(vocab)
        import xgrammar as xgr

        self.xgr = xgr
        # callm's manager caches compiled grammars itself (so "cold" means cold)
        self.compiler = xgr.GrammarCompiler(vocab.xgrammar_info(),
                                            max_threads=min(8, os.cpu_count() or 1),
                                            cache_enabled=False)

    def _json_grammar(self, schema) -> str:
        if schema is True:
            schema = {}
        grammar = self.xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False,
                                                    strict_mode=True)
        return str(grammar)

    def compile(self, kind: str, spec: Any):
        c = self.compiler
        if kind == "json":
            return c.compile_json_schema(json.dumps({} if spec is True else spec),
                                         any_whitespace=False, strict_mode=True)
        if kind == "json_object":
            return c.compile_json_schema('{"type": "object"}', any_whitespace=False,
                                         strict_mode=False)
        if kind == "regex":
            return c.compile_regex(spec)
        if kind == "choice":
            return c.compile_grammar("root ::= " + " | ".join(
                json.dumps(choice, ensure_ascii=False) for choice in spec))
        if kind == "grammar":
            return c.compile_grammar(spec) if "::=" in spec else c.compile_lark(spec)
        if kind == "structural_tag":
            tag = json.loads(spec) if isinstance(spec, str) else spec
            tag = _xgrammar_structural_tag(tag, self._json_grammar)
            return c.compile_structural_tag(json.dumps(tag))
        raise StructuredOutputError(f"xgrammar cannot compile a {_describe(kind)}")

    def matcher(self, compiled) -> GrammarMatcher:
        return _XGrammarMatcher(self, compiled)

    def fill_bitmask(self, matchers, bitmask, rows) -> None:
        for matcher, row in zip(matchers, rows):
            matcher.m.fill_next_token_bitmask(bitmask, row)


# --------------------------------------------------------------------------- llguidance

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalItems", "contains", "not", "if", "then", "else",
               "additionalProperties", "propertyNames", "unevaluatedItems")


def _closed_objects(schema):
    """The schema with `additionalProperties: false` on every object that lists `properties`
    and says nothing about others — xgrammar's strict mode, so that llguidance (which follows
    JSON Schema's default of allowing them) does not let a model invent properties."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: _closed_objects(v) for k, v in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_closed_objects(v) for v in out[key]]
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = _closed_objects(out[key])
    if isinstance(out.get("properties"), dict) and not any(
            k in out for k in ("additionalProperties", "unevaluatedProperties",
                               "patternProperties")):
        out["additionalProperties"] = False
    return out


def _json_style_only(node: dict, backend: str) -> None:
    """Tool-call arguments in a model's markup (an xgrammar JSON-schema style) compile with
    xgrammar, or here from the node's "portable" equivalent where the grammar has one."""
    style = node.get("style", "json")
    if style != "json":
        raise StructuredOutputError(
            f"the {backend} backend cannot write tool-call arguments in the model's own markup "
            f"(xgrammar's {style!r} style of this tool parser's format); use the xgrammar "
            "backend (--structured-outputs-backend xgrammar, or structured_outputs.backend)")


def _split_text(content: dict) -> tuple[list[dict], dict | None]:
    """A tag's content as (the parts before, the trailing free text) if it ends in free text."""
    elements = content["elements"] if content.get("type") == "sequence" else [content]
    if elements and elements[-1].get("type") == "any_text":
        return elements[:-1], elements[-1]
    return elements, None


class _LarkWriter:
    """A structural tag as an llguidance Lark grammar (lazy lexemes for triggers)."""

    def __init__(self, special_tokens: dict[str, int]):
        self.special = special_tokens
        self.rules: list[str] = []
        self.count = 0
        self.uses_text = False

    def grammar(self, node: dict) -> str:
        start = self.expr(node) or '""'
        head = ["%llguidance {}", f"start: {start}"]
        if self.uses_text:
            head.append(r"TAG_TEXT: /(.|\n)*/")
        return "\n".join(head + self.rules) + "\n"

    def _rule(self, body: str, options: str = "") -> str:
        self.count += 1
        name = f"r{self.count}"
        self.rules.append(f"{name}{options}: {body}")
        return name

    def literal(self, text: str) -> str:
        """Text as Lark: string literals, with special tokens as `<[id]>`."""
        if not text:
            return ""
        for token, token_id in self.special.items():
            if token in text:
                before, _, after = text.partition(token)
                return " ".join(p for p in (self.literal(before), f"<[{token_id}]>",
                                            self.literal(after)) if p)
        return json.dumps(text, ensure_ascii=False)

    @staticmethod
    def _seq(*parts: str) -> str:
        parts = [p for p in parts if p]
        return "(" + " ".join(parts) + ")" if len(parts) > 1 else (parts[0] if parts else "")

    def expr(self, node: dict) -> str:
        kind = node.get("type")
        if kind == "const_string":
            return self.literal(node["value"])
        if kind == "json_schema" and "portable" in node:
            return self.expr(node["portable"])
        if kind == "json_schema":
            _json_style_only(node, "llguidance")
            schema = node["json_schema"]
            schema = {} if schema is True else _closed_objects(schema)
            options = dict(schema.get("x-guidance") or {})
            options.update(whitespace_flexible=False, item_separator=ITEM_SEPARATOR,
                           key_separator=KEY_SEPARATOR)
            schema["x-guidance"] = options
            return self._rule("%json " + json.dumps(schema))
        if kind == "regex":
            import llguidance

            return self._rule("/" + llguidance.regex_to_lark(node["pattern"]) + "/")
        if kind == "sequence":
            return self._seq(*(self.expr(e) for e in node["elements"]))
        if kind == "or":
            return "(" + " | ".join(self.expr(e) or '""' for e in node["elements"]) + ")"
        if kind == "tag":
            head, text = _split_text(node["content"])
            if text is not None:  # content that runs as text up to the end marker
                return self._seq(self.literal(node["begin"]), *(self.expr(e) for e in head),
                                 self._text_until(node["end"], text.get("excludes") or []))
            return self._seq(self.literal(node["begin"]), self.expr(node["content"]),
                             self.literal(node["end"]))
        if kind == "repeat":
            high = "" if node["max"] < 0 else node["max"]
            return f"({self.expr(node['content'])}){{{node['min']},{high}}}"
        if kind == "tags_with_separator":
            one = self._rule(" | ".join(self.expr(t) for t in node["tags"]))
            sep = self.literal(node["separator"])
            if node.get("stop_after_first"):
                many = one
            else:
                many = f"{one} ({self._seq(sep, one)})*"
            return many if node.get("at_least_one") else f"({many})?"
        if kind == "triggered_tags":
            self._no_excludes(node)
            alternatives = []
            for tag in node["tags"]:
                trigger = next((t for t in node["triggers"] if tag["begin"].startswith(t)), None)
                if trigger is None:
                    raise StructuredOutputError(
                        f"structural tag: no trigger starts the tag {tag['begin']!r}")
                rest = self._seq(self.literal(tag["begin"][len(trigger):]),
                                 self.expr(tag["content"]), self.literal(tag["end"]))
                alternatives.append(self._triggered(trigger, rest))
            return self._repeat_triggered(alternatives, at_least_one=node.get("at_least_one"),
                                          once=node.get("stop_after_first"))
        if kind == "dispatch":
            self._no_excludes(node)
            alternatives = [self._triggered(pattern, self.expr(content))
                            for pattern, content in node["rules"]]
            return self._repeat_triggered(alternatives, at_least_one=False,
                                          once=not node.get("loop", True))
        if kind == "any_text":
            self._no_excludes(node)
            self.uses_text = True
            return "TAG_TEXT"
        if kind in ("optional", "plus", "star"):
            suffix = {"optional": "?", "plus": "+", "star": "*"}[kind]
            return f"({self.expr(node['content'])}){suffix}"
        raise StructuredOutputError(f"llguidance cannot express the structural-tag node "
                                    f"{kind!r}")

    def _text_until(self, end: str, excludes: list[str]) -> str:
        """Text that contains none of `excludes`, up to the first `end` (lazily matched)."""
        words = [e for e in excludes if e and not any(t in e for t in self.special)]
        if words:
            self.count += 1
            text = f"TEXT{self.count}"
            import llguidance

            banned = llguidance.regex_to_lark(
                "(.|\\n)*(" + "|".join(_regex_escape(w) for w in words) + ")(.|\\n)*")
            self.rules.append(f"{text}: /(.|\\n)*/ & ~/{banned}/")
        else:
            self.uses_text = True
            text = "TAG_TEXT"
        end_lark = self.literal(end)
        if not end_lark or end_lark.startswith("<["):  # a special token never occurs in text
            return self._seq(text, end_lark)
        return self._rule(f"{text} {end_lark}", "[lazy]")

    def _triggered(self, trigger: str, rest: str) -> str:
        """Free text up to `trigger`, then `rest`."""
        self.uses_text = True
        if trigger in self.special:  # a special token never occurs inside text
            return self._rule(self._seq("TAG_TEXT", f"<[{self.special[trigger]}]>", rest))
        head = self._rule(f"TAG_TEXT {json.dumps(trigger, ensure_ascii=False)}", "[lazy]")
        return self._rule(self._seq(head, rest))

    def _repeat_triggered(self, alternatives: list[str], at_least_one, once) -> str:
        alt = "(" + " | ".join(alternatives) + ")"
        if once:
            return alt if at_least_one else f"({alt} | TAG_TEXT)"
        return f"{alt}+ TAG_TEXT" if at_least_one else f"{alt}* TAG_TEXT"

    @staticmethod
    def _no_excludes(node: dict) -> None:
        if node.get("excludes") or node.get("max_tokens") or node.get("max_chars"):
            raise StructuredOutputError("llguidance structural tags: excludes and limits on "
                                        "free text are not supported")


class _LLGuidanceMatcher(GrammarMatcher):
    __slots__ = ("backend", "m")

    def __init__(self, backend, m):
        self.backend, self.m = backend, m

    def accept_token(self, token_id: int) -> bool:
        return self.m.consume_token(token_id)

    def rollback(self, num_tokens: int) -> None:
        self.m.rollback(num_tokens)


class LLGuidanceBackend(GrammarBackend):
    name = "llguidance"
    kinds = ("json", "json_object", "regex", "choice", "grammar", "structural_tag")

    def __init__(self, vocab: TokenizerFacts):
        super().__init__(vocab)
        try:
            import llguidance
            import llguidance.hf
        except ImportError:
            raise StructuredOutputError("the llguidance backend is not installed: pip install "
                                        "'callm[structured]'") from None
        self.llg = llguidance
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(
                vocab.tokenizer, n_vocab=vocab.vocab_size, eos_token=vocab.stop_token_ids)
        except ValueError as e:
            raise StructuredOutputError(f"llguidance cannot use this tokenizer: {e}") from None
        self.executor = llguidance.LLExecutor(min(8, os.cpu_count() or 1))
        self._special: dict[str, int] | None = None

    def special_tokens(self) -> dict[str, int]:
        """Text of each special token -> id (they match only as `<[id]>`, never as text)."""
        if self._special is None:
            tok = self.vocab.tokenizer
            self._special = {}
            added = getattr(tok, "added_tokens_decoder", None) or {}
            for token_id in sorted(set(added) | self.vocab.special_token_ids()):
                # llguidance's own view: e.g. Qwen's <tool_call> is special to it, not to HF
                if token_id < self.tokenizer.vocab_size and \
                        self.tokenizer.is_special_token(token_id):
                    text = tok.convert_ids_to_tokens(token_id)
                    if isinstance(text, str) and text:
                        self._special[text] = token_id
            # longest first, so a token containing another is matched whole
            self._special = dict(sorted(self._special.items(), key=lambda kv: -len(kv[0])))
        return self._special

    def _json(self, schema) -> str:
        return self.llg.LLMatcher.grammar_from_json_schema(
            {} if schema is True else _closed_objects(schema),
            overrides={"whitespace_flexible": False, "item_separator": ITEM_SEPARATOR,
                       "key_separator": KEY_SEPARATOR})

    def compile(self, kind: str, spec: Any) -> str:
        M = self.llg.LLMatcher
        if kind == "json":
            grammar = self._json(spec)
        elif kind == "json_object":
            grammar = self._json({"type": "object"})
        elif kind == "regex":
            grammar = M.grammar_from_regex(spec)
        elif kind == "choice":
            grammar = self.llg.grammar_from("choice", json.dumps(spec))
        elif kind == "grammar":
            grammar = self.llg.grammar_from("grammar" if "::=" in spec else "lark", spec)
        elif kind == "structural_tag":
            tag = json.loads(spec) if isinstance(spec, str) else spec
            node = tag.get("format", tag) if tag.get("type") == "structural_tag" else tag
            grammar = M.grammar_from_lark(_LarkWriter(self.special_tokens()).grammar(node))
        else:
            raise StructuredOutputError(f"llguidance cannot compile a {_describe(kind)}")
        is_error, messages = M.validate_grammar_with_warnings(grammar, self.tokenizer)
        if is_error:
            raise StructuredOutputError("; ".join(messages))
        return grammar

    def matcher(self, compiled: str) -> GrammarMatcher:
        m = self.llg.LLMatcher(self.tokenizer, compiled, log_level=0)
        if m.is_error():
            raise StructuredOutputError(m.get_error())
        return _LLGuidanceMatcher(self, m)

    def fill_bitmask(self, matchers, bitmask, rows) -> None:
        self.executor.unsafe_compute_mask_ptr([(m.m, row) for m, row in zip(matchers, rows)],
                                              bitmask.data_ptr(), bitmask.shape[1] * 4,
                                              bitmask.shape[0])


# --------------------------------------------------------------------------- outlines

_REGEX_META = set("\\.+*?()|[]{}^$#&-~")
_REGEX_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\f": "\\f", "\v": "\\v"}


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_META else _REGEX_ESCAPES.get(c, c) for c in text)


class _RegexWriter:
    """A structural tag as one regular expression (outlines): only shapes without lazy
    triggers, i.e. tool_choice required / named."""

    def __init__(self, json_regex):
        self.json_regex = json_regex

    def expr(self, node: dict) -> str:
        kind = node.get("type")
        if kind == "const_string":
            return _regex_escape(node["value"])
        if kind == "json_schema" and "portable" in node:
            return self.expr(node["portable"])
        if kind == "json_schema":
            _json_style_only(node, "outlines")
            return f"(?:{self.json_regex(node['json_schema'])})"
        if kind == "regex":
            return f"(?:{node['pattern']})"
        if kind == "sequence":
            return "".join(self.expr(e) for e in node["elements"])
        if kind == "or":
            return "(?:" + "|".join(self.expr(e) for e in node["elements"]) + ")"
        if kind == "tag":
            head, text = _split_text(node["content"])
            if text is not None:  # text up to the end marker: no character that opens one
                ends = [node["end"], *(text.get("excludes") or [])]
                chars = "".join(sorted({_regex_escape(e[0]) for e in ends if e}))
                body = f"[^{chars}]*" if chars else "(?:.|\\n)*"
                return (_regex_escape(node["begin"]) + "".join(self.expr(e) for e in head)
                        + body + _regex_escape(node["end"]))
            return (_regex_escape(node["begin"]) + self.expr(node["content"])
                    + _regex_escape(node["end"]))
        if kind == "repeat":
            high = "" if node["max"] < 0 else node["max"]
            return f"(?:{self.expr(node['content'])}){{{node['min']},{high}}}"
        if kind == "tags_with_separator":
            one = "(?:" + "|".join(self.expr(t) for t in node["tags"]) + ")"
            many = one if node.get("stop_after_first") else \
                f"{one}(?:{_regex_escape(node['separator'])}{one})*"
            return many if node.get("at_least_one") else f"(?:{many})?"
        if kind in ("optional", "plus", "star"):
            suffix = {"optional": "?", "plus": "+", "star": "*"}[kind]
            return f"(?:{self.expr(node['content'])}){suffix}"
        what = {"triggered_tags": "lazily triggered tags (strict tools in auto mode)",
                "dispatch": "lazily triggered rules (strict tools in auto mode)",
                "any_text": "free text"}.get(kind, f"the structural-tag node {kind!r}")
        raise StructuredOutputError(f"outlines cannot express {what}; use the xgrammar or "
                                    "llguidance backend")


class _OutlinesMatcher(GrammarMatcher):
    __slots__ = ("backend", "guide")

    def __init__(self, backend, guide):
        self.backend, self.guide = backend, guide

    def accept_token(self, token_id: int) -> bool:
        try:
            self.guide.advance(token_id, return_tokens=False)
            return True
        except Exception:
            return False

    def rollback(self, num_tokens: int) -> None:
        self.guide.rollback_state(num_tokens)


_WS = "(?:@WS@)"  # a placeholder for outlines' whitespace, replaced by the fixed separators
# (a comma next to an optional property's group keeps its space: `1, ("b": true, )?"c"`)
_WS_LAYOUT = ((f"{_WS}:{_WS}", KEY_SEPARATOR), (f"{_WS},{_WS}", ITEM_SEPARATOR),
              (f"{_WS},", ITEM_SEPARATOR), (f",{_WS}", ITEM_SEPARATOR),
              (f":{_WS}", KEY_SEPARATOR), (_WS, ""))


class OutlinesBackend(GrammarBackend):
    name = "outlines"
    kinds = ("json", "json_object", "regex", "choice", "structural_tag")
    max_rollback = 64

    def __init__(self, vocab: TokenizerFacts):
        super().__init__(vocab)
        try:
            import outlines_core
        except ImportError:
            raise StructuredOutputError("the outlines backend is not installed: pip install "
                                        "'callm[structured]'") from None
        self.oc = outlines_core
        eos = vocab.tokenizer.eos_token_id
        if eos not in vocab.stop_token_ids:
            eos = vocab.stop_token_ids[0]
        # as xgrammar: special tokens match their text (so a marker like <|python_tag|> can be
        # written as its single token), except stop tokens and tokens with no text
        info = vocab.xgrammar_info()
        excluded = set(info.special_token_ids) | set(vocab.stop_token_ids)
        tokens: dict[bytes, list[int]] = {}
        decoded = info.decoded_vocab  # bytes of every token, any tokenizer type
        for token_id, text in enumerate(decoded[:len(vocab.tokenizer)]):
            if text and token_id not in excluded:
                tokens.setdefault(bytes(text), []).append(token_id)
        self.vocabulary = outlines_core.Vocabulary(eos, tokens)

    def _json_regex(self, schema) -> str:
        """outlines-core's regex for the schema, with its whitespace (a placeholder here) laid
        out as the other backends write JSON: `{"a": 1, "b": [2, 3]}`."""
        regex = self.oc.json_schema.build_regex_from_schema(
            json.dumps({} if schema is True else schema), _WS)
        for placeholder, text in _WS_LAYOUT:
            regex = regex.replace(placeholder, _regex_escape(text).replace(" ", "[ ]"))
        return regex

    def compile(self, kind: str, spec: Any):
        if kind == "json":
            regex = self._json_regex(spec)
        elif kind == "json_object":
            regex = self._json_regex({"type": "object"})
        elif kind == "regex":
            regex = spec
        elif kind == "choice":
            regex = "|".join(_regex_escape(c) for c in spec)
        elif kind == "structural_tag":
            tag = json.loads(spec) if isinstance(spec, str) else spec
            node = tag.get("format", tag) if tag.get("type") == "structural_tag" else tag
            regex = _RegexWriter(self._json_regex).expr(node)
        else:
            raise StructuredOutputError(f"outlines cannot compile a {_describe(kind)} (it has "
                                        "no context-free grammars); use xgrammar or llguidance")
        return self.oc.Index(regex, self.vocabulary)

    def matcher(self, compiled) -> GrammarMatcher:
        return _OutlinesMatcher(self, self.oc.Guide(compiled, max_rollback=self.max_rollback))

    def fill_bitmask(self, matchers, bitmask, rows) -> None:
        words = bitmask.shape[1]
        for matcher, row in zip(matchers, rows):
            matcher.guide.write_mask_into(bitmask[row].data_ptr(), words, 4)


BACKENDS: dict[str, type[GrammarBackend]] = {
    "xgrammar": XGrammarBackend, "llguidance": LLGuidanceBackend, "outlines": OutlinesBackend}
assert tuple(BACKENDS) == STRUCTURED_OUTPUT_BACKENDS


# --------------------------------------------------------------------------- the manager

class CompiledGrammar:
    """A constraint compiled by one backend; hands out matchers."""

    __slots__ = ("backend", "kind", "handle")

    def __init__(self, backend: GrammarBackend, kind: str, handle):
        self.backend, self.kind, self.handle = backend, kind, handle

    def new_matcher(self) -> GrammarMatcher:
        return self.backend.matcher(self.handle)


class StructuredOutputManager:
    """Per engine (= per model): backends bound to its tokenizer, an LRU cache of compiled
    grammars, and the batch bitmask."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids,
                 default_backend: str = DEFAULT_BACKEND, cache_size: int = 256):
        if default_backend not in BACKENDS:
            raise ValueError(f"unknown structured outputs backend {default_backend!r}; use one "
                             f"of {', '.join(BACKENDS)}")
        self.vocab = TokenizerFacts(tokenizer, vocab_size, stop_token_ids)
        self.default_backend = default_backend
        self.cache_size = cache_size
        self._backends: dict[str, GrammarBackend] = {}
        self._cache: OrderedDict[tuple, CompiledGrammar] = OrderedDict()
        self.cache_hits = self.cache_misses = 0
        self._bitmask = torch.zeros(0, self.vocab.words, dtype=torch.int32)
        words = self.vocab.words
        stop = np.zeros(words * 32, dtype=bool)
        stop[[t for t in self.vocab.stop_token_ids if t < words * 32]] = True
        real = np.zeros(words * 32, dtype=bool)
        real[:self.vocab.vocab_size] = True
        self._real_words = _pack(real)
        self._content_words = _pack(real & ~stop)

    def backend(self, name: str | None = None) -> GrammarBackend:
        name = name or self.default_backend
        if name not in self._backends:
            if name not in BACKENDS:
                raise StructuredOutputError(f"unknown structured outputs backend {name!r}; use "
                                            f"one of {', '.join(BACKENDS)}")
            self._backends[name] = BACKENDS[name](self.vocab)
        return self._backends[name]

    def compile(self, params: StructuredOutputsParams) -> CompiledGrammar | None:
        """The compiled constraint of `params` (None if it sets none); cached. Raises
        StructuredOutputError (a ValueError) naming the problem."""
        kind = params.kind
        if kind is None:
            return None
        backend = self.backend(params.backend)
        spec = params.spec()
        key = (backend.name, kind, spec if isinstance(spec, str) else
               json.dumps(spec, ensure_ascii=False))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return hit
        self.cache_misses += 1
        if kind not in backend.kinds:
            raise StructuredOutputError(f"the {backend.name} backend cannot compile a "
                                        f"{_describe(kind)}; use xgrammar or llguidance")
        try:
            handle = backend.compile(kind, spec)
        except StructuredOutputError:
            raise
        except Exception as e:
            raise StructuredOutputError(f"invalid {_describe(kind)} for structured outputs "
                                        f"({backend.name}): {_clean(e)}") from None
        compiled = CompiledGrammar(backend, kind, handle)
        self._cache[key] = compiled
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return compiled

    def new_matcher(self, compiled: CompiledGrammar) -> GrammarMatcher:
        try:
            return compiled.new_matcher()
        except StructuredOutputError:
            raise
        except Exception as e:
            raise StructuredOutputError(f"structured outputs ({compiled.backend.name}): "
                                        f"{_clean(e)}") from None

    def clear_cache(self) -> None:
        self._cache.clear()

    # ----- per step -----

    def fill_bitmask(self, matchers: list[GrammarMatcher | None]) -> torch.Tensor:
        """The bitmask [len(matchers), words] with each grammar row filled (others stale)."""
        n = len(matchers)
        if self._bitmask.shape[0] < n:
            self._bitmask = torch.zeros(max(n, 2 * self._bitmask.shape[0]), self.vocab.words,
                                        dtype=torch.int32)
        bitmask = self._bitmask[:n]
        groups: dict[GrammarBackend, list[int]] = defaultdict(list)
        for i, m in enumerate(matchers):
            if m is not None:
                groups[m.backend].append(i)
        for backend, rows in groups.items():
            backend.fill_bitmask([matchers[i] for i in rows], bitmask, rows)
        return bitmask

    def apply_bitmask(self, logits: torch.Tensor,
                      matchers: list[GrammarMatcher | None]) -> list[int]:
        """Mask `logits` [len(matchers), V] float32 in place to what each row's grammar allows
        (rows without a matcher untouched). Returns the rows whose grammar allows nothing but
        the end of output: the caller finishes them instead of sampling."""
        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return []
        words = self.fill_bitmask(matchers).numpy()
        masks = words[rows]  # small checks in numpy: no thread pool wake-ups for microseconds
        ended = ~(masks & self._content_words).any(-1)
        free = ((masks & self._real_words) == self._real_words).all(-1)
        todo = [r for r, e, f in zip(rows, ended.tolist(), free.tolist()) if not (e or f)]
        if todo:
            todo_words = masks if len(todo) == len(rows) else words[todo]
            if sys.byteorder != "little":
                todo_words = todo_words.astype("<i4")
            allowed = torch.from_numpy(np.unpackbits(
                todo_words.view(np.uint8), axis=-1, count=logits.shape[1],
                bitorder="little").view(np.bool_))
            if len(todo) == logits.shape[0]:
                torch.where(allowed, logits, _NEG_INF, out=logits)
            else:
                sub = logits[todo]
                torch.where(allowed, sub, _NEG_INF, out=sub)
                logits[todo] = sub
        return [r for r, e in zip(rows, ended.tolist()) if e]


def _pack(bits: np.ndarray) -> np.ndarray:
    """bool[words * 32] -> int32[words] in the bitmask's layout."""
    return np.packbits(bits, bitorder="little").view("<i4").astype(np.int32)
