"""A tiny real MCP server (stdio) for the agent tests. With CALLM_TEST_SERVER=small in its
environment it serves only `add` and `whoami` (to test name clashes and the config's `env`);
`--http PORT` serves over streamable HTTP instead of stdio."""

import asyncio
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
    def fail(reason: Literal["x"]) -> str:
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

    @mcp.tool()
    async def hang() -> str:
        """Never answers (in time)."""
        await asyncio.sleep(3600)
        return "woke up"

    @mcp.tool()
    async def slow() -> str:
        """Answers after two seconds."""
        await asyncio.sleep(2)
        return "slept"

    @mcp.tool()
    def big() -> str:
        """A long result."""
        return "x" * 5000

    in_flight = peak = 0

    @mcp.tool()
    async def busy() -> str:
        """Takes a little while; counts how many run at once."""
        global in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        return "done"

    @mcp.tool()
    def busy_peak() -> str:
        """The most `busy` calls that ran at once (and start counting again)."""
        global peak
        seen, peak = peak, 0
        return str(seen)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:  # mcp_server.py --http PORT: streamable HTTP on loopback
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run("stdio")
