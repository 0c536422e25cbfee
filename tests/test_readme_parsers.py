"""The README's parser tables name every registered tool-call and reasoning parser (and alias),
so a format added to the registry cannot go undocumented."""

import re
from pathlib import Path

import pytest

from callm.reasoning import ReasoningParserManager
from callm.tool_parsers import ToolParserManager

README = (Path(__file__).parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + len(title))
    return README[start:end if end != -1 else None]


@pytest.mark.parametrize("manager,title", [(ToolParserManager, "## Tool-call parsers"),
                                           (ReasoningParserManager, "## Reasoning models")])
def test_every_registered_name_is_in_the_readme(manager, title):
    named = set(re.findall(r"`([A-Za-z0-9_.\-]+)`", _section(title)))
    missing = sorted(set(manager.list_registered()) - named)
    assert not missing, f"registered but not in the README's {title!r}: {missing}"
