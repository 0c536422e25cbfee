"""The built-in parser registry: every name resolves, each module registers exactly the names
`callm.tool_parsers._BUILTIN_PARSERS` lists for it, and every name has fixtures."""

import json
import subprocess
import sys
from collections import defaultdict

from parser_fixtures import ALIASES, FIXTURES, FIXTURES_BY_NAME

from callm.tool_parsers import _BUILTIN_PARSERS, FormatToolParser, ToolParserManager

PACKAGE = "callm.tool_parsers"


def test_every_builtin_name_resolves():
    registered = set(ToolParserManager.list_registered())
    assert set(_BUILTIN_PARSERS) <= registered
    for name, target in _BUILTIN_PARSERS.items():
        parser_cls = ToolParserManager.get_tool_parser(name)
        module, _, class_name = target.partition(":")
        assert parser_cls.__module__ == f"{PACKAGE}.{module}", name
        assert parser_cls.__name__ == class_name, name
        assert issubclass(parser_cls, FormatToolParser) and parser_cls.formats, name


# Run in a fresh interpreter: importing the package must import no parser module, and each
# module's import must register exactly its own names.
_PROBE = f"""
import importlib, json, sys
from callm.tool_parsers import _BUILTIN_PARSERS, ToolParserManager
loaded = sorted(m for m in sys.modules if m.startswith("{PACKAGE}.")
                and m.split(".")[-1] in {{t.split(":")[0] for t in _BUILTIN_PARSERS.values()}})
seen, by_module = set(), {{}}
for module in sorted({{t.split(":")[0] for t in _BUILTIN_PARSERS.values()}}):
    importlib.import_module("{PACKAGE}." + module)
    new = {{n: c for n, c in ToolParserManager.tool_parsers.items() if n not in seen}}
    seen |= set(new)
    by_module[module] = {{n: c.__module__.rsplit(".", 1)[-1] + ":" + c.__name__
                         for n, c in new.items()}}
print(json.dumps({{"loaded_by_package": loaded, "by_module": by_module}}))
"""


def test_importing_each_module_registers_exactly_its_listed_names():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["loaded_by_package"] == [], "built-in parsers must register lazily"
    expected = defaultdict(dict)
    for name, target in _BUILTIN_PARSERS.items():
        expected[target.split(":")[0]][name] = target
    assert probe["by_module"] == dict(expected)


def test_every_registered_name_has_fixtures():
    """One fixture list per parser class, and every name (aliases included) mapped to it."""
    builtin = {name for name in ToolParserManager.list_registered()
               if ToolParserManager.get_tool_parser(name).__module__.startswith(PACKAGE + ".")}
    assert builtin == set(FIXTURES_BY_NAME)
    classes = [ToolParserManager.get_tool_parser(name) for name in FIXTURES]
    assert len(set(classes)) == len(classes), "FIXTURES has one list per parser class"
    for alias, name in ALIASES.items():
        assert ToolParserManager.get_tool_parser(alias) is ToolParserManager.get_tool_parser(name)
        assert FIXTURES_BY_NAME[alias] is FIXTURES[name]
