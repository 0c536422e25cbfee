"""A tiny real MCP server (stdio) for the agent tests. With CALLM_TEST_SERVER=small in its
environment it serves only `add` and `whoami` (to test name clashes and the config's `env`);
`--http PORT` serves over streamable HTTP instead of stdio."""

import os
import sys
from typing import Literal

from mcp.server.mcpserver import MCPServer

SMALL = os.environ.get("CALLM_TEST_SERVER") == "small"
mcp = MCPServer("small" if SMALL else "calc")


@mcp.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


if SMALL:
    @mcp.tool()
    def whoami() -> str:
        """What the environment says."""
        return os.environ["CALLM_TEST_SERVER"]
else:
    @mcp.tool()
    def echo(word: Literal["hi", "bye"]) -> str:
        """Say a word back."""
        return f"echo {word}"

    @mcp.tool()
    def fail(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"failed because {reason}")

    @mcp.tool()
    def crash() -> str:
        """Kills this server process."""
        os._exit(3)

    tally_count = 0

    @mcp.tool()
    def tally(word: Literal["a", "b"]) -> str:
        """Counts its calls."""
        global tally_count
        tally_count += 1
        return f"tally {tally_count}"

    @mcp.tool()
    def tallies() -> str:
        """How many times tally ran."""
        return str(tally_count)

    @mcp.tool()
    def pid() -> str:
        """The server's process id."""
        return str(os.getpid())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:  # mcp_server.py --http PORT: streamable HTTP on loopback
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run("stdio")
