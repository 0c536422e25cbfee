"""Configs and weights from Hugging Face safetensors folders and GGUF files.

Both sources come out the same way: a transformers config, and `(name, tensor)` pairs under HF
parameter names, so model code never knows where its weights came from.

GGUF specifics (DESIGN.md §5):
- Tensors are renamed from llama.cpp's names (`blk.3.attn_q.weight`) to HF ones, and
  dequantized to float32 with the `gguf` package, one tensor at a time over a memory map.
- llama.cpp permutes the q/k projection rows of llama-family models (its rotary embedding pairs
  neighbouring dimensions, HF pairs the two halves of each head): undone here, as transformers
  does. Qwen2/Qwen3 GGUFs are written unpermuted.
- Opening a GGUF is slow (`GGUFReader` builds numpy views of every vocabulary string: 7 s and
  ~480 MB of Python objects for a 152k vocabulary), so is dequantizing (6 s for Qwen2.5-0.5B),
  and transformers needs another 9 s to read the config. So the first load saves the result as
  an HF-style folder (config.json + float32 model.safetensors, exact) under `cache_dir()/gguf`,
  keyed by the file's path, size and mtime; later loads memory-map that folder instead.
Anything that cannot be loaded is a ValueError naming the file and the supported architectures.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from callm.model_files import cache_dir

__all__ = ["SUPPORTED_ARCHITECTURES", "load_config", "iter_weights", "gguf_cache_folder",
           "WeightSlice"]

# GGUF `general.architecture` / HF `model_type` -> the HF class the model registry looks up
SUPPORTED_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
_PERMUTED_QK = ("llama", "mistral")  # architectures llama.cpp writes with rotary-permuted q/k rows

# llama.cpp tensor name -> HF parameter name (before ".weight" / ".bias")
_GGUF_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_GGUF_GLOBAL_TENSOR = re.compile(r"(\w+)\.(weight|bias)")

_CACHE_VERSION = 2  # bump when the conversion changes, so stale caches are not reused


def _supported() -> str:
    return ", ".join(SUPPORTED_ARCHITECTURES)


def _is_gguf(path: Path) -> bool:
    return path.is_file() and path.suffix == ".gguf"


# --- configs ------------------------------------------------------------------------------


def load_config(path: str | os.PathLike, *, use_cache: bool = True):
    """The transformers config of a .gguf file or an HF folder (ValueError if unusable)."""
    path = Path(path)
    if path.is_dir():
        return _load_folder_config(path)
    if not _is_gguf(path):
        raise ValueError(f"{path} is neither a .gguf file nor a Hugging Face model folder")
    cached = gguf_cache_folder(path) / "config.json"
    if use_cache and cached.is_file():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(cached.parent))
    else:
        config = _load_gguf_config(path)
        if use_cache:
            _write_atomically(cached, lambda tmp: config.to_json_file(str(tmp)))
    config._name_or_path = str(path)
    return config


def _load_folder_config(path: Path):
    from transformers import AutoConfig

    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json, so it is not a Hugging Face model folder")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as e:  # unknown model_type, malformed JSON, ...
        raise ValueError(f"cannot read the config in {path}: {e}; "
                         f"supported architectures: {_supported()}") from e
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{path}: model_type {config.model_type!r} is not supported; "
                         f"supported architectures: {_supported()}")
    return config


def _open_gguf(path: Path):
    """A `gguf.GGUFReader` over `path` (memory-mapped), with a supported architecture."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        arch = _field(reader, "general.architecture")
    except Exception as e:  # the reader fails in many ways on a damaged file
        raise ValueError(f"{path} is not a valid GGUF file ({type(e).__name__}: {e}); "
                         f"supported architectures: {_supported()}") from e
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; "
                         f"supported architectures: {_supported()}")
    return reader, arch


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _load_gguf_config(path: Path):
    """transformers' config for the GGUF, with what its GGUF reader misses filled in."""
    from transformers import AutoConfig

    reader, arch = _open_gguf(path)
    names = {t.name for t in reader.tensors}
    scaling = _field(reader, f"{arch}.rope.scaling.type", "none")
    if "rope_freqs.weight" in names or scaling != "none":
        # Llama 3.1+ rope scaling: transformers drops it and would silently compute wrong rotations
        raise ValueError(f"{path}: rope scaling ({scaling}, rope_freqs tensor: "
                         f"{'rope_freqs.weight' in names}) is not supported yet")
    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as e:
        raise ValueError(f"transformers cannot read the config of {path}: {e}") from e
    if config.model_type not in SUPPORTED_ARCHITECTURES:  # e.g. "llama" renamed by transformers
        raise ValueError(f"{path}: model_type {config.model_type!r} is not supported; "
                         f"supported architectures: {_supported()}")
    # The model registry picks the class from `architectures`, which a GGUF does not state.
    config.architectures = [SUPPORTED_ARCHITECTURES[config.model_type]]
    # transformers widens the float32 epsilon (1e-5 -> 9.999999747378752e-06): keep the
    # decimal the model was trained with.
    config.rms_norm_eps = float(str(np.float32(config.rms_norm_eps)))
    # transformers maps no head size for qwen2/qwen3 and uses the rotary width for llama; the
    # attention key length is the head size (Qwen3 heads are wider than hidden / heads).
    key_length = _field(reader, f"{arch}.attention.key_length")
    if key_length is not None:
        config.head_dim = int(key_length)
    # transformers assumes no biases; the file tells (Qwen2 always has q/k/v biases)
    if arch != "qwen2":
        config.attention_bias = "blk.0.attn_q.bias" in names
        if arch in _PERMUTED_QK:
            config.mlp_bias = "blk.0.ffn_up.bias" in names
    config.gguf_quant_type = _main_quant_type(reader)
    embed = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embed is not None:  # the embedding rows are the vocabulary the weights were built for
        config.vocab_size = int(embed.shape[-1])
    return config


def _main_quant_type(reader) -> str:
    """The GGML type most of the layers' matrices are stored in ("Q4_K", "Q8_0", "F16", ...),
    which `--quantization auto` keeps the precision class of."""
    import gguf

    counts = Counter()
    for t in reader.tensors:
        if t.name.startswith("blk.") and len(t.shape) == 2:
            counts[gguf.GGMLQuantizationType(int(t.tensor_type)).name] += int(t.n_elements)
    return counts.most_common(1)[0][0] if counts else "F32"


# --- weights ------------------------------------------------------------------------------


def iter_weights(path: str | os.PathLike, config, *, use_cache: bool = True,
                 lazy: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """`(HF parameter name, CPU tensor)` for every tensor of a .gguf file or an HF folder.

    GGUF tensors come out float32 in HF layout ([out_features, in_features] for linear
    weights); no `lm_head.weight` when the file ties it to the embedding. Folder tensors come
    out as stored (the caller casts). Tensors are made one at a time (or memory-mapped from
    safetensors), so a caller that copies each into its model holds no second copy of it.

    `lazy=True` (tensor-parallel ranks): tensors read from safetensors — a folder, or a GGUF's
    converted cache — come as `WeightSlice`s, read only where indexed, so each rank reads just
    its own rows or columns. A GGUF without its cache is dequantized whole tensor by tensor.
    """
    path = Path(path)
    if path.is_dir():
        return _iter_folder(path, lazy)
    if not _is_gguf(path):
        raise ValueError(f"{path} is neither a .gguf file nor a Hugging Face model folder")
    return _iter_gguf(path, config, use_cache, lazy)


class WeightSlice:
    """A checkpoint tensor not read yet: `w[a:b]`, `w[:, a:b]` read just those elements from
    the memory-mapped safetensors file, `w[...]` reads all of it; `to(dtype)` casts on read.
    Valid while the iteration that produced it is at that tensor."""

    def __init__(self, handle, name: str, dtype: torch.dtype | None = None):
        self.name = name
        self._slice = handle.get_slice(name)
        self.shape = torch.Size(self._slice.get_shape())
        self.dtype = dtype

    def to(self, dtype: torch.dtype) -> "WeightSlice":
        other = object.__new__(WeightSlice)
        other.__dict__.update(self.__dict__, dtype=dtype)
        return other

    def __getitem__(self, index) -> torch.Tensor:
        tensor = self._slice[index]
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def __repr__(self) -> str:
        return f"WeightSlice({self.name!r}, shape={tuple(self.shape)})"


def _iter_folder(path: Path, lazy: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded: only the shards the index names (Mistral repos ship extras)
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        if any(path.glob("pytorch_model*.bin")):
            raise ValueError(f"{path} holds only pytorch_model*.bin weights, which are not "
                             "supported (pickle files): convert them to safetensors")
        raise ValueError(f"{path} has no *.safetensors weights")
    return _iter_safetensors([path / f for f in files], lazy)


def _iter_safetensors(files: list[Path], lazy: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                yield name, WeightSlice(f, name) if lazy else f.get_tensor(name)


def gguf_cache_folder(path: str | os.PathLike) -> Path:
    """Where the converted copy of a GGUF lives: keyed by path, size and mtime, since
    hashing a large file costs seconds."""
    path = Path(path)
    st = path.stat()
    key = f"{_CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return cache_dir() / "gguf" / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _iter_gguf(path: Path, config, use_cache: bool,
               lazy: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    cached = gguf_cache_folder(path) / "model.safetensors"
    if use_cache and cached.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(cached), framework="pt") as f:  # a readable header, or convert again
                f.keys()
        except Exception:
            pass
        else:
            yield from _iter_safetensors([cached], lazy)
            return

    reader, arch = _open_gguf(path)
    tensors = [(_hf_name(t.name, path), t) for t in reader.tensors]  # unknown names fail first
    writer = None
    if use_cache:
        writer = _SafetensorsWriter(cached, [(n, tuple(int(d) for d in reversed(t.shape)))
                                             for n, t in tensors])
    try:
        for name, t in tensors:
            weight = _dequantize(t)
            if arch in _PERMUTED_QK and ".self_attn.q_proj." in name:
                weight = _unpermute_rotary(weight, config.num_attention_heads)
            elif arch in _PERMUTED_QK and ".self_attn.k_proj." in name:
                weight = _unpermute_rotary(weight, config.num_key_value_heads)
            if writer is not None:
                writer.add(weight)
            yield name, weight
        if writer is not None:
            writer.finish()
    finally:
        if writer is not None:
            writer.abort()  # stopped early or failed: no half-written cache (no-op once finished)


def _hf_name(gguf_name: str, path: Path) -> str:
    if m := _GGUF_LAYER_TENSOR.fullmatch(gguf_name):
        layer, part, kind = m.groups()
        if part in _GGUF_LAYER_NAMES:
            return f"model.layers.{layer}.{_GGUF_LAYER_NAMES[part]}.{kind}"
    elif m := _GGUF_GLOBAL_TENSOR.fullmatch(gguf_name):
        part, kind = m.groups()
        if part in _GGUF_GLOBAL_NAMES:
            return f"{_GGUF_GLOBAL_NAMES[part]}.{kind}"
    raise ValueError(f"{path}: GGUF tensor {gguf_name!r} has no known Hugging Face name")


_DEQUANT_CHUNK = 1 << 22  # elements per dequantize call


def _dequantize(tensor) -> torch.Tensor:
    """A float32 torch tensor in HF shape (GGUF lists dimensions fastest-first).

    Dequantized a few rows at a time into the output: `gguf` keeps about two copies of its
    result alive while it works, 1 GB extra for a 150k-vocabulary embedding.
    """
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed(tensor.shape))
    out = np.empty(shape, dtype=np.float32)
    rows, flat = tensor.data.reshape(-1, tensor.data.shape[-1]), out.reshape(-1, shape[-1])
    step = max(1, _DEQUANT_CHUNK // shape[-1])
    for start in range(0, len(rows), step):
        flat[start:start + step] = dequantize(rows[start:start + step], tensor.tensor_type)
    return torch.from_numpy(out)


def _unpermute_rotary(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order. Within each head it stores the rows interleaved
    (dim 0 of the first half, dim 0 of the second half, dim 1, ...); HF keeps the halves apart.
    Also right for a bias (1-D)."""
    rows = weight.shape[0]
    head = weight.reshape(num_heads, rows // num_heads // 2, 2, *weight.shape[1:])
    return head.transpose(1, 2).reshape(weight.shape).contiguous()


# --- the cache ----------------------------------------------------------------------------


def _write_atomically(target: Path, write) -> None:
    """`write(tmp)` then rename over `target`; a read-only or full cache is only skipped."""
    tmp = _tmp_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, target)
    except OSError:
        _remove(tmp)


def _tmp_name(target: Path) -> Path:
    """A name next to `target` no other writer (process or thread) uses."""
    return target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # e.g. a file where the cache folder should be
        pass


class _SafetensorsWriter:
    """Streams float32 tensors into a safetensors file, one at a time.

    safetensors' own `save_file` needs every tensor in memory at once (2.5 GB for Qwen-0.5B);
    the format is an 8-byte header length, a JSON header with each tensor's byte range, then
    the bytes, so with shapes known up front the header is written first. Written to a temporary
    name and renamed when complete; any OSError (full or read-only disk) drops the cache.
    """

    def __init__(self, target: Path, shapes: list[tuple[str, tuple[int, ...]]]):
        self.target = target
        self.tmp = _tmp_name(target)
        header, offset = {}, 0
        for name, shape in shapes:
            size = 4 * int(np.prod(shape))
            header[name] = {"dtype": "F32", "shape": list(shape),
                            "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.tmp, "wb")
            self.file.write(len(blob).to_bytes(8, "little") + blob)
        except OSError:
            self.file = None
            self.abort()

    def add(self, tensor: torch.Tensor) -> None:
        if self.file is None:
            return
        try:
            self.file.write(memoryview(tensor.contiguous().numpy()).cast("B"))
        except OSError:
            self.abort()

    def finish(self) -> None:
        if self.file is None:
            return
        try:
            self.file.close()
            self.file = None
            os.replace(self.tmp, self.target)
        except OSError:
            self.abort()

    def abort(self) -> None:
        file, self.file = getattr(self, "file", None), None
        if file is not None:
            try:
                file.close()
            except OSError:  # flushing onto a full disk
                pass
        _remove(self.tmp)
