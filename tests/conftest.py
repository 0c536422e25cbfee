"""Lets tests import helper modules that live in tests/ (e.g. `real_tokenizers`) by bare name."""

import os
import sys
from pathlib import Path

import torch

# Without a GPU, Triton kernels run in its interpreter; the variable must be set before anything
# (torch._dynamo, transformers) imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama saved as an HF folder with SmolLM2's tokenizer."""
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")
