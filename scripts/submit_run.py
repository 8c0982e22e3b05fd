#!/usr/bin/env python3
"""Submit a run to agentic and follow it, using nothing but nats-py.

This is what any NATS client, in any language, does to use agentic (see the README section
"Submitting runs from any NATS client"):

1. subscribe to the run's events, ``agentic.events.<run_id>.*`` in the JetStream stream
   ``AGENTIC_EVENTS``, delivering from the first stored event (so subscribing before
   submitting loses nothing);
2. send a RunRequest (``agentic/schemas/RunRequest.json``) as a request on
   ``agentic.runs.submit``; the reply is ``{"run_id": ...}`` or ``{"error": ...}``;
3. read RunEvents (``agentic/schemas/RunEvent.json``) until ``succeeded``, ``failed`` or
   ``cancelled``.

Usage::

    AGENTIC_NATS_URL=nats://127.0.0.1:4222 python scripts/submit_run.py demo topic="agent runs"

The bus requires a credential (docs/security.md): an nkey seed file given with ``--nkey``
(default ``$AGENTIC_NATS_NKEY_SEED_FILE``, else the client credential ``agentic up`` left for
that URL in ``~/.agentic/credentials/<host>_<port>.nk``). A client only names a workflow of
the coordinator's catalog and gives its inputs; it never defines providers.

Exit status: 0 the run succeeded; 1 it failed, was cancelled or the wait timed out; 2 bad
usage or the run was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from urllib.parse import urlsplit

import nats
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

SUBMIT_SUBJECT = "agentic.runs.submit"
EVENTS_STREAM = "AGENTIC_EVENTS"
TERMINAL = {"succeeded", "failed", "cancelled"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Submit an agentic run over NATS and follow it.")
    parser.add_argument("workflow", help="the name of a workflow in the coordinator's catalog")
    parser.add_argument("inputs", nargs="*", metavar="NAME=VALUE", help="run inputs")
    parser.add_argument(
        "--url",
        default=os.environ.get("AGENTIC_NATS_URL", "nats://127.0.0.1:4222"),
        help="NATS URL(s), comma-separated (default: $AGENTIC_NATS_URL)",
    )
    parser.add_argument(
        "--nkey",
        default=os.environ.get("AGENTIC_NATS_NKEY_SEED_FILE"),
        help="nkey seed file of your client identity (default: $AGENTIC_NATS_NKEY_SEED_FILE, "
        "else the one `agentic up` left for the URL)",
    )
    parser.add_argument("--run-id", help="the run id (default: a new one)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    args = parser.parse_args(argv)
    args.input_map = {}
    for item in args.inputs:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"input {item!r} is not NAME=VALUE")
        args.input_map[name] = value
    return args


def describe(event: dict) -> str:
    """One line per event: sequence, type, step and attempt, then the event's data."""
    where = f" {event['step_id']}" if event.get("step_id") else ""
    if event.get("attempt"):
        where += f" (attempt {event['attempt']})"
    data = json.dumps(event.get("data") or {}, ensure_ascii=False)
    return f"[{event.get('seq')}] {event.get('type')}{where} {data}"


def local_credential(url: str) -> str | None:
    """The client seed `agentic up` left for the server at ``url``, if any."""
    parsed = urlsplit(url if "://" in url else f"nats://{url}")
    folder = os.environ.get("AGENTIC_NATS_CREDENTIALS_DIR", "~/.agentic/credentials")
    path = os.path.join(os.path.expanduser(folder), f"{parsed.hostname}_{parsed.port or 4222}.nk")
    return path if os.path.isfile(path) else None


async def connect(args: argparse.Namespace) -> nats.NATS | None:
    """Connect (a few attempts, then a clear error); None when no server let us in."""
    servers = args.url.split(",")
    seed = args.nkey or next(filter(None, map(local_credential, servers)), None)
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    try:
        nc = await nats.connect(
            servers=servers, nkeys_seed=seed, max_reconnect_attempts=3, error_cb=on_error
        )
    except Exception as exc:  # nats-py raises several unrelated types here
        print(f"cannot connect to {args.url}: {errors[-1] if errors else exc}", file=sys.stderr)
        return None
    nc.options["max_reconnect_attempts"] = -1  # once in, ride out server restarts
    return nc


async def follow(args: argparse.Namespace) -> int:
    run_id = args.run_id or f"ext-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    nc = await connect(args)
    if nc is None:
        return 2
    try:
        js = nc.jetstream()
        try:
            events = await js.subscribe(
                # One token per event type: unlike ``.>``, this cannot match the events of
                # a run whose id extends this one with a dot.
                f"agentic.events.{run_id}.*",
                stream=EVENTS_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                idle_heartbeat=1.0,
            )
        except NotFoundError:
            print(f"no {EVENTS_STREAM} stream: is an agentic coordinator running?", file=sys.stderr)
            return 2
        request = {"run_id": run_id, "workflow_ref": args.workflow, "inputs": args.input_map}
        try:
            answer = await nc.request(SUBMIT_SUBJECT, json.dumps(request).encode(), timeout=10)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            print(f"no agentic coordinator answers on {SUBMIT_SUBJECT}", file=sys.stderr)
            return 2
        reply = json.loads(answer.data)
        if "error" in reply:
            print(f"refused: {reply['error']}", file=sys.stderr)
            return 2
        print(f"submitted run {reply['run_id']}")
        return await read_until_terminal(events, run_id, args.timeout)
    finally:
        await nc.close()


async def read_until_terminal(events, run_id: str, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        try:
            msg = await events.next_msg(timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        event = json.loads(msg.data)
        if event.get("run_id") != run_id:  # on this run's subject, but about another run
            continue
        print(describe(event), flush=True)
        if event.get("type") in TERMINAL:
            if event["type"] == "succeeded":
                print(event.get("data", {}).get("output", ""))
                return 0
            return 1
    print(f"no final event within {timeout:g}s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(follow(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
