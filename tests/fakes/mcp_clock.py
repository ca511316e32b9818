"""A real MCP server for the tests, written with the official `mcp` SDK (the one Moltbot's
MCP child uses as a client): a clock whose answers the tests can predict.

    python tests/fakes/mcp_clock.py                       # stdio
    python tests/fakes/mcp_clock.py --http PORT [--token T]  # streamable HTTP on 127.0.0.1
    python tests/fakes/mcp_clock.py --pidfile P           # writes its pid (tests kill it)
    python tests/fakes/mcp_clock.py --fail "why"          # says why on stderr, exits at once

Tools: `now` (a fixed time, so a test can find it in the answer), `echo`, `slow` (sleeps the
seconds it is given: the time-out test), `getenv` (what the server's environment holds),
`grow` (adds a tool and says the list changed) and `boom` (a tool error).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context  # resolved by name: the tools' annotations are text

FIXED_NOW = "2026-12-06T09:30:00+00:00"


def build_server() -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("clock", log_level="WARNING")

    @server.tool(description="The current time, ISO 8601.")
    def now(zone: str = "UTC") -> str:
        return f"{FIXED_NOW} ({zone})"

    @server.tool(description="Says the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Waits the given seconds, then answers.")
    async def slow(seconds: float = 60.0) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    @server.tool(description="An environment variable of the server, or '(unset)'.")
    def getenv(name: str) -> str:
        return os.environ.get(name, "(unset)")

    @server.tool(description="Adds a tool `later` and says the tool list changed.")
    async def grow(ctx: Context) -> str:
        server.add_tool(lambda: "here now", name="later", description="Added by grow.")
        await ctx.notify_tools_changed()
        return "grown"

    @server.tool(description="Always fails.")
    def boom() -> str:
        raise ToolError("the clock broke")

    return server


def serve_http(server: Any, port: int, token: str | None) -> None:
    """Streamable HTTP on 127.0.0.1; with `token`, requests without that bearer get 401."""
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and token is not None:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"bad token"})
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    parser.add_argument("--token")
    parser.add_argument("--pidfile")
    parser.add_argument("--fail")
    args = parser.parse_args()
    if args.fail:
        print("starting the clock...", file=sys.stderr)
        print(args.fail, file=sys.stderr)
        sys.exit(3)
    if args.pidfile:
        with open(args.pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(args.pidfile + ".tmp", args.pidfile)
    server = build_server()
    if args.http:
        serve_http(server, args.http, args.token)
    else:
        server.run()


if __name__ == "__main__":
    main()
