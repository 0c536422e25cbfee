"""Tool-parser plugins by file path and by installed entry point; general plugins; clear errors
for broken plugin files."""

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from callm.tool_parsers import ToolParserManager

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tool_parser_plugin.py"
OUTPUT = 'Checking.<functioncall> {"name": "get_time", "arguments": {"tz": "UTC"}}'


@pytest.fixture(autouse=True)
def _clean_registry():
    parsers = dict(ToolParserManager.tool_parsers)
    lazy = dict(ToolParserManager.lazy_parsers)
    yield
    ToolParserManager.tool_parsers = parsers
    ToolParserManager.lazy_parsers = lazy
    ToolParserManager._entry_points_loaded = False


def _parity_result(parser_name: str):
    sys.path.insert(0, str(ROOT / "tests" / "tool_parsers"))
    try:
        from parser_fixtures import request_with_tools
        from streaming_parity import assert_streaming_parity
    finally:
        sys.path.pop(0)
    return assert_streaming_parity(ToolParserManager.get_tool_parser(parser_name), OUTPUT,
                                   request_with_tools())


def test_plugin_by_file_path():
    ToolParserManager.tool_parsers.pop("functioncall", None)  # other tests may have loaded it
    assert "functioncall" not in ToolParserManager.list_registered()
    ToolParserManager.import_tool_parser(str(EXAMPLE))
    assert "functioncall" in ToolParserManager.list_registered()
    result = _parity_result("functioncall")
    assert result.calls == [("get_time", '{"tz": "UTC"}')]
    assert result.content == "Checking."


def test_plugin_by_entry_point(tmp_path, monkeypatch):
    """An installed distribution declaring `callm.tool_parsers` is found with no flags."""
    dist = tmp_path / "callm_functioncall-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: callm-functioncall\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[callm.tool_parsers]\nfc_entry = tool_parser_plugin:FunctionCallToolParser\n")
    (tmp_path / "tool_parser_plugin.py").write_text(EXAMPLE.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    ToolParserManager._entry_points_loaded = False
    assert "fc_entry" in ToolParserManager.list_registered()
    result = _parity_result("fc_entry")
    assert result.calls == [("get_time", '{"tz": "UTC"}')]
    sys.modules.pop("tool_parser_plugin", None)


def test_plugin_by_module_name(tmp_path, monkeypatch):
    (tmp_path / "my_parsers.py").write_text(EXAMPLE.read_text().replace('"functioncall"',
                                                                        '"by_module"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    ToolParserManager.import_tool_parser("my_parsers")
    assert ToolParserManager.get_tool_parser("by_module").__name__ == "FunctionCallToolParser"
    sys.modules.pop("my_parsers", None)


def test_broken_plugin_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import json\n\nraise RuntimeError('boom')\n")
    with pytest.raises(ImportError, match=r"bad_plugin\.py:3: RuntimeError: boom"):
        ToolParserManager.import_tool_parser(str(bad))
    syntax = tmp_path / "syntax_plugin.py"
    syntax.write_text("x = 1\ndef broken(:\n")
    with pytest.raises(ImportError, match=r"syntax_plugin\.py:2: SyntaxError"):
        ToolParserManager.import_tool_parser(str(syntax))
    with pytest.raises(FileNotFoundError, match="missing_plugin.py"):
        ToolParserManager.import_tool_parser(str(tmp_path / "missing_plugin.py"))


def test_unknown_parser_lists_known_ones():
    with pytest.raises(KeyError, match="hermes.*mistral"):
        ToolParserManager.get_tool_parser("no_such_parser")


def test_register_module_forms():
    from callm.tool_parsers import ToolParser

    @ToolParserManager.register_module
    class Bare(ToolParser):
        pass

    ToolParserManager.register_module(["a1", "a2"], module=Bare)
    assert ToolParserManager.get_tool_parser("Bare") is Bare
    assert ToolParserManager.get_tool_parser("a2") is Bare
    with pytest.raises(KeyError, match="already registered"):
        ToolParserManager.register_module("a1", force=False, module=Bare)
    with pytest.raises(TypeError):
        ToolParserManager.register_module("x", module=int)


def test_general_plugin_runs_once_at_startup(tmp_path):
    """A `callm.plugins` entry point is called once; here it registers a parser alias."""
    dist = tmp_path / "callm_general-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: callm-general\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[callm.plugins]\nalias = general_plugin:register\n")
    (tmp_path / "general_plugin.py").write_text(textwrap.dedent("""
        CALLS = []
        def register():
            from callm.tool_parsers import ToolParserManager
            CALLS.append(1)
            ToolParserManager.register_module("hermes_alias", module=ToolParserManager.get_tool_parser("hermes"))
    """))
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        from callm.plugins import load_general_plugins
        from callm.tool_parsers import ToolParserManager
        assert load_general_plugins() == ["alias"]
        assert load_general_plugins() == []
        import general_plugin
        assert general_plugin.CALLS == [1]
        print(ToolParserManager.get_tool_parser("hermes_alias").__name__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "HermesToolParser"


def test_cli_lists_plugin_parser():
    out = subprocess.run([sys.executable, "-m", "callm.entrypoints.cli", "parsers",
                          "--tool-parser-plugin", str(EXAMPLE)], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "functioncall" in out.stdout.split()
    bad = subprocess.run([sys.executable, "-m", "callm.entrypoints.cli", "parsers",
                          "--tool-parser-plugin", "nope/missing.py"], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "missing.py" in bad.stderr


def test_example_markup_plugin_types_values_by_schema():
    """The example's markup-parameter format, declared in a few lines, parses and streams with
    values typed by the tool's schema."""
    ToolParserManager.import_tool_parser(str(EXAMPLE))
    sys.path.insert(0, str(ROOT / "tests" / "tool_parsers"))
    try:
        from parser_fixtures import request_with_tools
        from streaming_parity import assert_streaming_parity
    finally:
        sys.path.pop(0)
    output = ('Checking.<tool><call name="search_docs"><arg name="query">tool calling</arg>'
              '<arg name="limit">3</arg></call></tool>')
    result = assert_streaming_parity(ToolParserManager.get_tool_parser("xmlcall"), output,
                                     request_with_tools(), all_splits=False)
    assert result.normalized() == ("Checking.", [("search_docs", {"query": "tool calling",
                                                                 "limit": 3})])
