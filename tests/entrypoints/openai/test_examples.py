"""The examples a user copies run as written against the embedded model."""

import importlib.util
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_openai_tool_calling_example(smollm, capsys):
    example = load("openai_tool_calling")
    example.main(str(smollm.base_url), "smollm2-135m-instruct", "What's the weather in Boston?")
    out = capsys.readouterr().out
    assert "whole:" in out and "streamed:" in out and "agent:" in out


def test_parse_tool_calls_example():
    out = subprocess.run([sys.executable, str(EXAMPLES / "parse_tool_calls.py")],
                         capture_output=True, text=True, check=True).stdout
    for name in ("hermes", "mistral", "llama3_json", "pythonic", "llama4_pythonic"):
        assert f"== {name}" in out
    assert out.count("call: get_weather") >= 9


def test_offline_chat_tools_example():
    outputs = load("offline_chat_tools").main("smollm2-135m-instruct")
    assert len(outputs) == 2 and all(o.outputs[0].text for o in outputs)
