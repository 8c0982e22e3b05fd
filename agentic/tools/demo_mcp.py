"""A small, deterministic MCP server for demos and tests.

Run it over stdio (how an MCP provider with ``stdio: {command: python, args: [-m,
agentic.tools.demo_mcp]}`` starts it)::

    python -m agentic.tools.demo_mcp

or over streamable HTTP (the endpoint is ``http://HOST:PORT/mcp``)::

    python -m agentic.tools.demo_mcp --http --port 8765

Its tools answer from built-in data only, so a scripted agent that calls them produces
the same output on every run and every backend.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mcp.server.fastmcp import FastMCP

FACTS: dict[str, str] = {
    "crewai": "CrewAI runs role-playing agents that work through tasks as a crew.",
    "mcp": "The Model Context Protocol lets agents call tools that live in other processes.",
    "nats": "NATS JetStream keeps messages in streams and delivers them at least once.",
    "kubernetes": "Kubernetes runs containers as Pods and finished work as Jobs.",
    "python": "Python was first released by Guido van Rossum in 1991.",
    "agentic": "agentic runs the same agent workflow in-process, as subprocesses, "
    "as Kubernetes Jobs or over NATS.",
}


def word_count(text: str) -> int:
    """Count the words in ``text`` (runs of non-whitespace characters)."""
    return len(text.split())


def lookup_fact(topic: str) -> str:
    """Return a one-sentence fact about ``topic`` from a small built-in list."""
    fact = FACTS.get(topic.strip().lower())
    if fact is not None:
        return fact
    known = ", ".join(sorted(FACTS))
    return f"No fact is recorded about {topic!r}; known topics are: {known}."


def build_server(host: str = "127.0.0.1", port: int = 8000) -> FastMCP:
    """The demo server with its two tools; ``host``/``port`` matter only over HTTP."""
    server = FastMCP("agentic-demo", host=host, port=port, log_level="WARNING")
    server.add_tool(word_count, name="word_count")
    server.add_tool(lookup_fact, name="lookup_fact")
    return server


def main(argv: Sequence[str] | None = None) -> None:
    """Serve over stdio, or over streamable HTTP with ``--http``."""
    parser = argparse.ArgumentParser(prog="python -m agentic.tools.demo_mcp", description=__doc__)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port")
    args = parser.parse_args(argv)
    server = build_server(args.host, args.port)
    server.run("streamable-http" if args.http else "stdio")


if __name__ == "__main__":
    main()
