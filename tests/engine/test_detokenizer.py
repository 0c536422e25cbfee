"""IncrementalDetokenizer against real tokenizers: deltas rebuild `decode(ids)`, split characters
never leak U+FFFD, and stop strings cut the stream without ever retracting streamed text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from callm.engine.detokenizer import IncrementalDetokenizer
from real_tokenizers import llama32_tokenizer, qwen25_tokenizer, smollm2_tokenizer

TOKENIZERS = {"smollm2": smollm2_tokenizer, "qwen2.5": qwen25_tokenizer,
              "llama3.2": llama32_tokenizer}
SPECIAL = {"smollm2": "<|im_end|>", "qwen2.5": "<|im_end|>", "llama3.2": "<|eot_id|>"}
TEXTS = [
    "Hello, world!", " leading space", "trailing spaces   ", "  \n\n  ", "x",
    "emoji 😀🎉🦙 👍🏽 family 👨‍👩‍👧 end", "🦙", "中文测试，日本語のテキスト，한국어", "𠜎龘",
    "café naïve Ångström façade ñandú Ελληνικά русский",
    'def f(x):\n    """doc"""\n    return {"a": [1, 2.5]}  # ok\n\tpass\r\n',
    "line one\nline two\n\n", "literal \ufffd replacement char",
]


def hf(name):
    return TOKENIZERS[name]().raw


def decode(tok, ids, skip):
    return tok.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)


def stream(tok, ids, prompt=(), skip=False, stop=(), include=False, chunk=1):
    """Deltas from feeding `ids` `chunk` at a time, then flush (skipped once finished)."""
    d = IncrementalDetokenizer(tok, list(prompt), skip, list(stop), include)
    deltas = [d.add(ids[i:i + chunk]) for i in range(0, len(ids), chunk)]
    deltas.append(d.flush())
    assert "".join(deltas) == d.text
    return d, deltas


# ----- text -----

@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_deltas_join_to_decode(name, skip):
    tok = hf(name)
    marker = SPECIAL[name]
    prompt = tok.encode(f"{marker}\nassistant\n", add_special_tokens=False)
    texts = TEXTS + [f"before{marker}after", f"{marker}", f"a {marker}\n{marker} b 😀{marker}"]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        want = decode(tok, ids, skip)
        for chunk in (1, 3):
            _, deltas = stream(tok, ids, prompt, skip, chunk=chunk)
            assert "".join(deltas) == want, (text, chunk, deltas)
            if "\ufffd" not in want:
                assert not any("\ufffd" in d for d in deltas), (text, deltas)


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_special_tokens_kept_or_skipped(name):
    tok = hf(name)
    marker = SPECIAL[name]
    ids = tok.encode(f"a{marker}b", add_special_tokens=False)
    assert "".join(stream(tok, ids, skip=False)[1]) == f"a{marker}b"
    assert "".join(stream(tok, ids, skip=True)[1]) == "ab"


def test_qwen_tool_call_markers_are_not_special():
    """Qwen's `<tool_call>` is an added but non-special token: decode keeps it even when
    skipping special tokens, which is what tool parsers rely on."""
    tok = hf("qwen2.5")
    text = '<tool_call>{"name": "f"}</tool_call><|im_end|>'
    ids = tok.encode(text, add_special_tokens=False)
    assert 151657 in ids and 151658 in ids
    assert "".join(stream(tok, ids, skip=False)[1]) == text
    assert "".join(stream(tok, ids, skip=True)[1]) == '<tool_call>{"name": "f"}</tool_call>'


@pytest.mark.parametrize("name", ["smollm2", "llama3.2"])
def test_split_character_emitted_whole(name):
    tok = hf(name)
    ids = tok.encode("a🦙b", add_special_tokens=False)
    assert len(ids) > 3  # the llama emoji spans several byte-level tokens
    _, deltas = stream(tok, ids)
    assert [d for d in deltas if d] == ["a", "🦙", "b"]


def test_unfinished_character_released_by_flush():
    """A character the model never finished decodes as `decode` does (U+FFFD), at the end."""
    tok = hf("smollm2")
    ids = tok.encode("ok 🦙", add_special_tokens=False)[:-1]
    d, deltas = stream(tok, ids)
    assert deltas[-1].endswith("\ufffd") and "\ufffd" not in "".join(deltas[:-1])
    assert d.text == decode(tok, ids, False)


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_random_ids_match_decode(name):
    """Arbitrary ids (invalid byte sequences included) never raise and still rebuild decode."""
    tok = hf(name)
    rng = random.Random(0)
    for _ in range(100):
        ids = [rng.randrange(300) if rng.random() < 0.6 else rng.randrange(len(tok))
               for _ in range(rng.randrange(1, 25))]
        skip = rng.random() < 0.5
        _, deltas = stream(tok, ids, skip=skip, chunk=rng.randrange(1, 4))
        assert "".join(deltas) == decode(tok, ids, skip)


# ----- sentencepiece-style decoding (Metaspace, byte fallback, leading-space strip) -----

@pytest.fixture(scope="module")
def spm_tokenizer():
    """Mistral v1's sentencepiece model (shipped in mistral-common; Llama-2 layout) with the
    decoder HF uses for it. Ids come from sentencepiece itself; only decoding is under test."""
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("mistral_common")
    import mistral_common
    from tokenizers import AddedToken, Tokenizer, decoders, models

    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    vocab = [(sp.id_to_piece(i), 0.0) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<unk>", "<s>", "</s>")])
    return sp, tok


def test_sentencepiece_first_token_in_context(spm_tokenizer):
    """Alone, "▁Hello" decodes without its space; after the prompt it keeps it."""
    sp, tok = spm_tokenizer
    ids = sp.encode("Hello world")
    assert "".join(stream(tok, ids)[1]) == "Hello world" == tok.decode(ids)
    prompt = sp.encode("[INST] hi [/INST]")
    assert stream(tok, ids, prompt)[1][0] == " Hello"


def test_sentencepiece_deltas_join_to_decode_in_context(spm_tokenizer):
    sp, tok = spm_tokenizer
    prompt = [1] + sp.encode("[INST] hi [/INST]")
    for text in TEXTS + ["line\n🦙 龘 𠜎"]:
        ids = sp.encode(text)
        want = tok.decode(prompt + ids)[len(tok.decode(prompt)):]
        for chunk in (1, 2):
            _, deltas = stream(tok, ids, prompt, chunk=chunk)
            assert "".join(deltas) == want, (text, deltas)
            if "\ufffd" not in want:
                assert not any("\ufffd" in d for d in deltas), (text, deltas)


def test_sentencepiece_byte_garbage_never_raises(spm_tokenizer):
    """Byte-fallback decoding of invalid UTF-8 rewrites earlier text (DecodeStream then raises
    "Invalid prefix"): the stream restarts and keeps going; no exact match is possible."""
    _, tok = spm_tokenizer
    rng = random.Random(1)
    for _ in range(200):
        ids = [rng.choice([rng.randrange(3, 259), rng.randrange(32000), 28705])
               for _ in range(rng.randrange(1, 20))]
        d, _ = stream(tok, ids, chunk=rng.randrange(1, 3))
        rest = iter(d.text)  # all valid text survives, in order
        assert all(c in rest for c in tok.decode(ids).replace("\ufffd", ""))


# ----- stop strings -----

def expected_visible(text, stops):
    """What may be streamed of `text` while no stop string completed: all but the longest
    suffix that could still begin a stop string."""
    for k in range(min(len(text), max(map(len, stops)) - 1), 0, -1):
        if any(s.startswith(text[len(text) - k:]) for s in stops):
            return text[:len(text) - k]
    return text


def run_stops(text, stops, include=False, name="smollm2"):
    """Token by token: until a stop completes, streamed text is the decoded text less the
    minimal held-back tail (nothing is held when the stop string is included in the output).
    Returns the detokenizer after the stop (or after flush)."""
    tok = hf(name)
    ids = tok.encode(text, add_special_tokens=False)
    d = IncrementalDetokenizer(tok, [], False, stops, include)
    for n in range(1, len(ids) + 1):
        d.add(ids[n - 1:n])
        if d.finished:
            break
        so_far = decode(tok, ids[:n], False)
        assert d.text == (so_far if include else expected_visible(so_far, stops))
    d.flush()
    return d


def cut(text, stop, include=False):
    i = text.index(stop)
    return text[:i + len(stop)] if include else text[:i]


@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("text,stops,reason", [
    ("Hello world. Bye.", ["."], "."),                        # single token
    ("a STOP here b", ["STOP here"], "STOP here"),            # several tokens
    ("Hello world", ["lo wor"], "lo wor"),                    # starts and ends inside tokens
    ("Hello world", ["Hello"], "Hello"),                      # the very first token
    ("Hello world", ["world", "lo w"], "lo w"),               # completes first, though listed last
    ("x abcd y", ["abcd", "bc"], "bc"),                       # inner one completes first
    ("say <EN but then <END> more", ["<END>"], "<END>"),      # partial match released first
    ('{"a": 1}\n\n```\nrest', ["```", "\n\n\n"], "```"),
])
def test_stop_strings(text, stops, reason, include):
    d = run_stops(text, stops, include)
    assert d.finished and d.stop_reason == reason
    assert d.text == cut(text, reason, include)


@pytest.mark.parametrize("include", [False, True])
def test_stop_result_independent_of_chunking(include):
    tok = hf("smollm2")
    text = "x abcd y <EN <END> z"
    ids = tok.encode(text, add_special_tokens=False)
    for stops in (["abcd", "bc"], ["<END>"], ["d y <", "y <EN"]):
        results = set()
        for chunk in range(1, len(ids) + 1):
            d, _ = stream(tok, ids, stop=stops, include=include, chunk=chunk)
            results.add((d.text, d.stop_reason))
        assert len(results) == 1, (stops, results)


def test_partial_stop_held_then_released():
    tok = hf("smollm2")
    d = IncrementalDetokenizer(tok, [], False, ["<END>"], False)
    assert d.add(tok.encode("a <EN", add_special_tokens=False)) == "a "
    assert d.add(tok.encode("D!", add_special_tokens=False)) == "<END!"
    assert not d.finished and d.text == "a <END!"


def test_flush_releases_held_text():
    tok = hf("smollm2")
    ids = tok.encode("answer: 42 <EN", add_special_tokens=False)
    d, deltas = stream(tok, ids, stop=["<END>"])
    assert deltas[-1] == "<EN" and d.text == "answer: 42 <EN"
    assert not d.finished and d.stop_reason is None


def test_include_stop_str_streams_without_holding():
    tok = hf("smollm2")
    d = IncrementalDetokenizer(tok, [], False, ["<END>"], True)
    assert d.add(tok.encode("a <EN", add_special_tokens=False)) == "a <EN"
    assert d.add(tok.encode("D> b", add_special_tokens=False)) == "D>"
    assert d.finished and d.text == "a <END>"


def test_nothing_after_stop():
    tok = hf("smollm2")
    d = IncrementalDetokenizer(tok, [], False, ["."], False)
    assert d.add(tok.encode("Hi. there", add_special_tokens=False)) == "Hi"
    assert d.add(tok.encode(" more", add_special_tokens=False)) == ""
    assert d.flush() == "" and d.text == "Hi" and d.stop_reason == "."


def test_special_token_as_stop_string():
    tok = hf("qwen2.5")
    ids = tok.encode("done<|im_end|>junk", add_special_tokens=False)
    d, _ = stream(tok, ids, skip=False, stop=["<|im_end|>"])
    assert d.text == "done" and d.stop_reason == "<|im_end|>"


def test_stop_search_window_is_bounded():
    """Each add searches the new text plus at most max_stop_len - 1 older characters."""
    windows = []

    class Recording(IncrementalDetokenizer):
        def _find_stop(self, window):
            windows.append(len(window))
            return super()._find_stop(window)

    tok = hf("smollm2")
    ids = tok.encode("lorem ipsum <EN dolor " * 200, add_special_tokens=False)
    d = Recording(tok, [], False, ["<END>", "zz"], False)
    for t in ids:
        d.add([t])
    assert not d.finished and len(d.text) > 4000
    assert max(windows) <= 2 * (len("<END>") - 1) + max(len(tok.decode([t])) for t in ids)
