"""Incremental detokenization with stop strings, one instance per output sequence.

Text comes from `tokenizers.decoders.DecodeStream`, which decodes a short sliding window of
token ids in Rust and returns only the growth. It holds back tokens while the window's text
ends in an incomplete UTF-8 character (U+FFFD), so a split emoji or CJK character is never
emitted half-way, and because the window starts at an earlier token, decoders that treat a
sequence's first token specially (sentencepiece's leading-space strip) see each new token in
context. The stream is seeded with the prompt's last tokens so that the first output token
decodes in context too. Two gaps are filled here:

- DecodeStream has no end-of-stream call: tokens it still holds (a character the model never
  finished, or text ending in a literal U+FFFD) would be lost, so we track them and `flush()`
  decodes them the way `tokenizer.decode` would.
- It raises "Invalid prefix" when new tokens rewrite already-emitted text (possible only for
  invalid byte sequences). We then restart it from the last emitted tokens, as vLLM does.

Stop strings are matched on text. Text that could still become the start of a stop string is
held back, so nothing streamed ever needs retracting; each call searches only the new text
plus the last `max(len(stop)) - 1` characters, so the cost per token does not grow with the
output. Which stop string wins (the one that completes first) does not depend on how tokens
are grouped into `add` calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

__all__ = ["IncrementalDetokenizer"]

_REPLACEMENT = "\ufffd"
_SEED_MIN, _SEED_MAX = 4, 24  # prompt tokens used as decoding context for the first output


def _tail(text: str, n: int) -> str:
    return text[max(0, len(text) - n):]


class IncrementalDetokenizer:
    """Turns one sequence's sampled token ids into final text, one `add` call per step.

    `text` is everything returned so far (the concatenation of `add`/`flush` results): text
    held back for a possible stop string is not in it until released.
    """

    def __init__(self, tokenizer, prompt_token_ids: Sequence[int] = (),
                 skip_special_tokens: bool = True, stop: Iterable[str] | None = (),
                 include_stop_str_in_output: bool = False):
        backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(
            tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise TypeError(f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) "
                            "tokenizer; IncrementalDetokenizer needs one")
        self._tok = backend
        self.skip_special_tokens = skip_special_tokens
        self.stop = [s for s in dict.fromkeys(stop or ()) if s]
        self.include_stop_str_in_output = include_stop_str_in_output
        self.stop_reason: str | None = None
        self.finished = False
        self._lookback = max(map(len, self.stop), default=1) - 1
        self._stop_prefixes = {s[:i] for s in self.stop for i in range(1, len(s))}
        self._parts: list[str] = []  # returned text, joined lazily by `text`
        self._recent = ""  # last `_lookback` characters of returned text
        self._held = ""  # decoded text withheld because a stop string may start in it
        self._context = self._seed(list(prompt_token_ids))  # ids of the last emitted chunk
        self._pending: list[int] = []  # ids the stream holds (no text emitted for them yet)
        self._stream = DecodeStream(self._context, skip_special_tokens)

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def add(self, token_ids: Sequence[int]) -> str:
        """Feed newly sampled ids; return the text that became final (often "")."""
        ids = list(token_ids)
        if self.finished or not ids:
            return ""
        try:
            piece = self._stream.step(self._tok, ids)
        except Exception as e:  # tokenizers raises a plain Exception for this
            if "Invalid prefix" not in str(e):
                raise
            piece = self._restart(ids)
        if piece is None:
            self._pending += ids
            return ""
        self._context, self._pending = self._pending + ids, []
        return self._release(piece, final=False)

    def flush(self) -> str:
        """End of generation (EOS, length): release held tokens and held-back text."""
        if self.finished:
            return ""
        piece = ""
        if self._pending:
            before = self._decode(self._context)
            after = self._decode(self._context + self._pending)
            piece = after[len(before):] if after.startswith(before) else self._decode(
                self._pending)
            self._context, self._pending = self._context + self._pending, []
        return self._release(piece, final=True)

    # ----- internals -----

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def _seed(self, prompt: list[int]) -> list[int]:
        """The shortest prompt suffix (at least _SEED_MIN tokens) that decodes cleanly; one
        with U+FFFD in it would start or end inside a character and corrupt the first delta."""
        for n in range(min(_SEED_MIN, len(prompt)), min(_SEED_MAX, len(prompt)) + 1):
            seed = prompt[len(prompt) - n:]
            if _REPLACEMENT not in self._decode(seed):
                return seed
        return []

    def _restart(self, ids: list[int]) -> str | None:
        """New stream with the last emitted chunk as context; without context if even that
        fails. Pending ids are replayed: they were never emitted."""
        for context in (self._context, []):
            self._stream = DecodeStream(context, self.skip_special_tokens)
            try:
                piece = self._stream.step(self._tok, self._pending + ids)
            except Exception as e:
                if "Invalid prefix" not in str(e) or not context:
                    raise
                continue
            return piece
        raise AssertionError("unreachable")

    def _release(self, new: str, final: bool) -> str:
        """Apply stop strings to `new`; return what is final, keep the rest held back."""
        if not self.stop:
            out = new
        else:
            buf = self._held + new
            window = self._recent + buf
            hit = self._find_stop(window)
            if hit is not None:
                start, stop = hit
                end = start + len(stop) if self.include_stop_str_in_output else start
                out, self._held = buf[:max(0, end - len(self._recent))], ""
                self.finished, self.stop_reason = True, stop
            else:
                keep = 0 if final or self.include_stop_str_in_output else self._partial_len(buf)
                out, self._held = buf[:len(buf) - keep], buf[len(buf) - keep:]
            self._recent = _tail(self._recent + out, self._lookback)
        if out:
            self._parts.append(out)
        return out

    def _find_stop(self, window: str) -> tuple[int, str] | None:
        """The occurrence that completes first (then the one starting first): what a
        token-by-token stream would have stopped at."""
        best = None
        for stop in self.stop:
            i = window.find(stop)
            if i >= 0 and (best is None or (i + len(stop), i) < (best[0] + len(best[1]), best[0])):
                best = (i, stop)
        return best

    def _partial_len(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of a stop string."""
        for k in range(min(len(buf), self._lookback), 0, -1):
            if buf[len(buf) - k:] in self._stop_prefixes:
                return k
        return 0
