"""The chunkings every streaming-parity helper replays an output at (tool-call and reasoning
parsers alike): one character at a time, every split into two, seeded random sizes, whole, and
cut at marker boundaries so each marker arrives as one delta."""

import random
from collections.abc import Iterable


def chunkings(text: str, seed: int = 0, random_runs: int = 5, all_splits: bool = True):
    """1 char at a time, every split into 2, seeded random sizes, and whole."""
    yield [text[i:i + 1] for i in range(len(text))]
    if all_splits:
        for i in range(1, len(text)):
            yield [text[:i], text[i:]]
    rng = random.Random(seed)
    for _ in range(random_runs):
        chunks, i = [], 0
        while i < len(text):
            n = rng.randint(1, 12)
            chunks.append(text[i:i + n])
            i += n
        yield chunks
    yield [text]


def marker_chunkings(text: str, markers: Iterable[str]):
    """Cut at every marker boundary, so each marker arrives as one delta, as when the tokenizer
    has it as a single token: the text between markers whole, then one character at a time."""
    markers = sorted({m for m in markers if m}, key=len, reverse=True)
    pieces, i, plain = [], 0, ""
    while i < len(text):
        marker = next((m for m in markers if text.startswith(m, i)), None)
        if marker is None:
            plain += text[i]
            i += 1
            continue
        pieces.append((plain, False))
        pieces.append((marker, True))
        plain, i = "", i + len(marker)
    pieces.append((plain, False))
    pieces = [(p, is_marker) for p, is_marker in pieces if p]
    if not any(is_marker for _, is_marker in pieces):
        return
    yield [p for p, _ in pieces]
    yield [c for p, is_marker in pieces for c in ([p] if is_marker else p)]
