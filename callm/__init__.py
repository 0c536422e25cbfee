"""callm: an LLM serving engine whose first-class job is OpenAI-compatible tool calling.

Importing `callm` is cheap: the engine (and torch) load only when `LLM` or `SamplingParams`
is first touched.
"""

__version__ = "0.1.0"

__all__ = ["LLM", "SamplingParams", "__version__"]


def __getattr__(name: str):
    if name == "LLM":
        from callm.entrypoints.llm import LLM

        return LLM
    if name == "SamplingParams":
        from callm.engine.sampling_params import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'callm' has no attribute {name!r}")
