"""The README's parser tables name every built-in tool-call and reasoning parser (and alias),
so a format added to the registry cannot go undocumented. (Built-ins only: plugin tests
register example formats into the same registries.)"""

import re
from pathlib import Path

import pytest

from callm import reasoning, tool_parsers

README = (Path(__file__).parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + len(title))
    return README[start:end if end != -1 else None]


@pytest.mark.parametrize("package,title", [(tool_parsers, "## Tool-call parsers"),
                                           (reasoning, "## Reasoning models")])
def test_every_built_in_name_is_in_the_readme(package, title):
    named = set(re.findall(r"`([A-Za-z0-9_.\-]+)`", _section(title)))
    missing = sorted(set(package._BUILTIN_PARSERS) - named)
    assert not missing, f"registered but not in the README's {title!r}: {missing}"
