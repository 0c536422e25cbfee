"""Lets tests import helper modules that live in tests/ (e.g. `real_tokenizers`) by bare name."""

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
