"""ReasoningParserManager: lookups, registration forms, plugins by file path, module name and
installed entry point, clear errors for broken plugin files, and lazy built-ins."""

import importlib
import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from callm.reasoning import (_BUILTIN_PARSERS, FormatReasoningParser, ReasoningParser,
                             ReasoningParserManager)

from .reasoning_parity import assert_reasoning_parity

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "reasoning_parser_plugin.py"

# A family written by description alone, as a plugin author would.
PLUGIN = textwrap.dedent('''
    from callm.reasoning import FormatReasoningParser, ReasoningFormat, ReasoningParserManager


    @ReasoningParserManager.register_module(["scratchpad", "scratchpad_v2"])
    class ScratchpadReasoningParser(FormatReasoningParser):
        """`<scratchpad>…</scratchpad>`, then the answer in `<final>…</final>`; the template
        takes `scratchpad=False`, and thinks only when asked."""

        format = ReasoningFormat(start="<scratchpad>", end="</scratchpad>",
                                 answer_markers=("<final>", "</final>"),
                                 switch=("scratchpad",), thinks_by_default=False)
''')


@pytest.fixture(autouse=True)
def _clean_registry():
    parsers = dict(ReasoningParserManager.reasoning_parsers)
    lazy = dict(ReasoningParserManager.lazy_parsers)
    yield
    ReasoningParserManager.reasoning_parsers = parsers
    ReasoningParserManager.lazy_parsers = lazy
    ReasoningParserManager._entry_points_loaded = False


def test_unknown_parser_names_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown reasoning parser 'no_such'.*deepseek_r1.*qwen3"):
        ReasoningParserManager.get_reasoning_parser("no_such")


def test_list_registered_holds_every_builtin_sorted():
    names = ReasoningParserManager.list_registered()
    assert names == sorted(names)
    assert set(_BUILTIN_PARSERS) <= set(names)


def test_every_builtin_name_resolves_to_its_listed_class():
    for name, target in _BUILTIN_PARSERS.items():
        cls = ReasoningParserManager.get_reasoning_parser(name)
        module, _, class_name = target.partition(":")
        assert (cls.__module__, cls.__name__) == (f"callm.reasoning.{module}", class_name), name
        assert issubclass(cls, FormatReasoningParser), name


def test_register_module_forms():
    @ReasoningParserManager.register_module
    class Bare(ReasoningParser):
        pass

    @ReasoningParserManager.register_module("named")
    class Named(ReasoningParser):
        pass

    @ReasoningParserManager.register_module(["l1", "l2"])
    class Listed(ReasoningParser):
        pass

    ReasoningParserManager.register_module("called", module=Named)
    assert ReasoningParserManager.get_reasoning_parser("Bare") is Bare
    assert ReasoningParserManager.get_reasoning_parser("named") is Named
    assert ReasoningParserManager.get_reasoning_parser("called") is Named
    assert ReasoningParserManager.get_reasoning_parser("l2") is Listed
    assert {"Bare", "named", "called", "l1", "l2"} <= set(ReasoningParserManager.list_registered())
    with pytest.raises(KeyError, match="already registered"):
        ReasoningParserManager.register_module("l1", force=False, module=Named)
    assert ReasoningParserManager.get_reasoning_parser("l1") is Listed
    ReasoningParserManager.register_module("l1", module=Named)  # force=True replaces
    assert ReasoningParserManager.get_reasoning_parser("l1") is Named
    with pytest.raises(TypeError):
        ReasoningParserManager.register_module("x", module=int)


def _check_scratchpad(name: str):
    cls = ReasoningParserManager.get_reasoning_parser(name)
    assert issubclass(cls, FormatReasoningParser)
    on = {"chat_template_kwargs": {"scratchpad": True}}
    assert assert_reasoning_parity(
        cls, "<scratchpad>\nadd them\n</scratchpad>\n<final>4</final>", **on) == ("add them", "4")
    assert assert_reasoning_parity(cls, "add them</scratchpad>4", prompt="Q?<scratchpad>",
                                   **on) == ("add them", "4")
    assert assert_reasoning_parity(cls, "4", prompt="Q?<scratchpad>") == (None, "4")  # not asked
    assert assert_reasoning_parity(cls, "<scratchpad>hm<tool_call>{}", interrupts=["<tool_call>"],
                                   **on) == ("hm", "<tool_call>{}")


def test_plugin_by_file_path(tmp_path):
    plugin = tmp_path / "scratchpad_plugin.py"
    plugin.write_text(PLUGIN)
    assert "scratchpad" not in ReasoningParserManager.list_registered()
    ReasoningParserManager.import_reasoning_parser(str(plugin))
    assert {"scratchpad", "scratchpad_v2"} <= set(ReasoningParserManager.list_registered())
    _check_scratchpad("scratchpad")
    assert (ReasoningParserManager.get_reasoning_parser("scratchpad_v2")
            is ReasoningParserManager.get_reasoning_parser("scratchpad"))


def test_plugin_by_module_name(tmp_path, monkeypatch):
    (tmp_path / "my_reasoning_parsers.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    ReasoningParserManager.import_reasoning_parser("my_reasoning_parsers")
    _check_scratchpad("scratchpad")
    sys.modules.pop("my_reasoning_parsers", None)


def test_plugin_by_entry_point(tmp_path, monkeypatch):
    """An installed distribution declaring `callm.reasoning_parsers` is found with no flags,
    and its module is imported only when the name is asked for."""
    dist = tmp_path / "callm_scratchpad-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: callm-scratchpad\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[callm.reasoning_parsers]\nsp_entry = sp_entry_plugin:ScratchpadReasoningParser\n")
    (tmp_path / "sp_entry_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    ReasoningParserManager._entry_points_loaded = False
    assert "sp_entry" in ReasoningParserManager.list_registered()
    assert "sp_entry_plugin" not in sys.modules
    _check_scratchpad("sp_entry")
    sys.modules.pop("sp_entry_plugin", None)


def test_broken_plugin_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad_reasoning_plugin.py"
    bad.write_text("from callm.reasoning import ReasoningFormat\n\nReasoningFormat(nope=1)\n")
    with pytest.raises(ImportError, match=r"reasoning parser plugin .*bad_reasoning_plugin\.py:3: "
                                          r"TypeError"):
        ReasoningParserManager.import_reasoning_parser(str(bad))
    syntax = tmp_path / "syntax_reasoning_plugin.py"
    syntax.write_text("x = 1\nclass Broken(:\n")
    with pytest.raises(ImportError, match=r"syntax_reasoning_plugin\.py:2: SyntaxError"):
        ReasoningParserManager.import_reasoning_parser(str(syntax))
    with pytest.raises(FileNotFoundError, match="missing_plugin.py"):
        ReasoningParserManager.import_reasoning_parser(str(tmp_path / "missing_plugin.py"))
    with pytest.raises(ModuleNotFoundError):
        ReasoningParserManager.import_reasoning_parser("no_such_reasoning_module")


def test_example_plugin_loads_and_splits():
    ReasoningParserManager.import_reasoning_parser(str(EXAMPLE))
    cls = ReasoningParserManager.get_reasoning_parser("reflect")
    output = "<reflect>\nThe user wants a greeting.\n</reflect>\n\nHello! 👋"
    assert assert_reasoning_parity(cls, output) == ("The user wants a greeting.", "Hello! 👋")
    assert assert_reasoning_parity(cls, "Hello!", prompt="<reflect>",
                                   chat_template_kwargs={"reflect": False}) == (None, "Hello!")
    assert assert_reasoning_parity(cls, "Greeting.</reflect>Hello!",
                                   prompt="<|assistant|><reflect>") == ("Greeting.", "Hello!")
    text = EXAMPLE.read_text()
    assert "--reasoning-parser-plugin examples/reasoning_parser_plugin.py" in text
    assert "--reasoning-parser reflect" in text


def test_example_plugin_runs_as_a_script():
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "('The user wants a greeting.', 'Hello!')"


# Run in a fresh interpreter: importing the package must import no family module, and importing
# each module must register exactly the names `_BUILTIN_PARSERS` lists for it.
_PROBE = """
import importlib, json, sys
from callm.reasoning import _BUILTIN_PARSERS, ReasoningParserManager
modules = sorted({t.split(":")[0] for t in _BUILTIN_PARSERS.values()})
loaded = sorted(m for m in sys.modules if m.startswith("callm.reasoning.")
                and m.rsplit(".", 1)[-1] in modules)
seen, by_module = set(), {}
for module in modules:
    importlib.import_module("callm.reasoning." + module)
    new = {n: c for n, c in ReasoningParserManager.reasoning_parsers.items() if n not in seen}
    seen |= set(new)
    by_module[module] = {n: c.__module__.rsplit(".", 1)[-1] + ":" + c.__name__
                         for n, c in new.items()}
print(json.dumps({"loaded_by_package": loaded, "by_module": by_module}))
"""


def test_builtins_register_lazily_and_exactly_as_listed():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["loaded_by_package"] == [], "built-in reasoning parsers must register lazily"
    expected = defaultdict(dict)
    for name, target in _BUILTIN_PARSERS.items():
        expected[target.split(":")[0]][name] = target
    assert probe["by_module"] == dict(expected)
