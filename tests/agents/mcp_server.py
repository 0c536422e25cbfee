"""A tiny real MCP server (stdio) for the agent tests: `add`, `fail`, `crash` and `env`."""

import os

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("calc")


@mcp.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@mcp.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"failed because {reason}")


@mcp.tool()
def crash() -> str:
    """Kills this server process."""
    os._exit(3)


@mcp.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


if __name__ == "__main__":
    mcp.run("stdio")
