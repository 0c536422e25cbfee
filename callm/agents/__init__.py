"""Tools callm runs itself: Python functions, callbacks and MCP servers, and the batched tool
loop behind `LLM.run_tools`."""

from callm.agents.tool_loop import AgentResult
from callm.agents.tools import ToolBox, ToolLimits, ToolResult

__all__ = ["AgentResult", "ToolBox", "ToolLimits", "ToolResult"]
