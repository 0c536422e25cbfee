"""examples/offline_agent.py: on the tiny random model (fast), and on the embedded model (slow)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "offline_agent.py"


def load():
    spec = importlib.util.spec_from_file_location("offline_agent", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(results):
    assert len(results) == 2
    for result in results:
        assert result.rounds >= 1  # the first turn was forced to call
        calls = result.messages[1]["tool_calls"]
        answers = result.messages[2:2 + len(calls)]
        assert [a["tool_call_id"] for a in answers] == [c["id"] for c in calls]
        assert result.finish_reason in ("stop", "length", "max_tool_rounds")


def test_offline_agent_example_tiny(tiny_llama_dir, capsys):
    check(load().main(str(tiny_llama_dir), max_tokens=32, dtype="float32",
                      max_model_len=1024, kv_cache_memory=32 * 2**20))
    assert "round(s) of tools" in capsys.readouterr().out


@pytest.mark.slow
def test_offline_agent_example_embedded(capsys):
    results = load().main()
    check(results)
    for result in results:  # a real model calls with real arguments, and the tools answer
        assert not any(r.is_error for r in result.tool_results)
