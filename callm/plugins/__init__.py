"""Plugin discovery through package entry points.

- `callm.tool_parsers`: `name = "module:ToolParserClass"`; the parser appears in
  `ToolParserManager` (lazily, like the built-ins) with no flags.
- `callm.reasoning_parsers`: the same for `ReasoningParserManager`.
- `callm.plugins`: `name = "module:function"`; each function is called once at startup, before
  models or parsers are resolved, so it can register models, parsers or anything else.
  `CALLM_PLUGINS=a,b` limits which general plugins load.
"""

import logging
import os
from importlib.metadata import entry_points

logger = logging.getLogger(__name__)

_general_plugins_loaded = False


def load_general_plugins() -> list[str]:
    """Call every `callm.plugins` entry point once per process; returns the names called."""
    global _general_plugins_loaded
    if _general_plugins_loaded:
        return []
    _general_plugins_loaded = True
    allowed = os.environ.get("CALLM_PLUGINS")
    allowed_names = {n.strip() for n in allowed.split(",")} if allowed else None
    called = []
    for ep in entry_points(group="callm.plugins"):
        if allowed_names is not None and ep.name not in allowed_names:
            continue
        try:
            ep.load()()
        except Exception as e:
            raise RuntimeError(f"general plugin {ep.name!r} ({ep.value}) failed: {e}") from e
        logger.info("loaded general plugin %s", ep.name)
        called.append(ep.name)
    return called
