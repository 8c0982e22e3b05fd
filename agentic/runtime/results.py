"""Pieces of a StepResult: the error of a failed attempt, the worker, token usage, timing.

Retry semantics are decided by exception type, never by message text:

* an :class:`agentic.errors.StepFailure` anywhere in the exception chain keeps its type name
  and ``retryable`` flag (the scripted ``error`` mode is retryable, ``fatal`` is not);
* a :class:`agentic.errors.ConfigError` (bad provider entry, missing environment variable,
  SDK not installed) is not retryable: it fails the same way every time;
* anything else (network errors, CrewAI errors, an MCP server that does not answer) is
  retryable, reported with its type name.

A failure of the model provider itself (an HTTP 408, 429 or 5xx answer, a refused
connection or a timeout of the SDK's client, past the client's own retries) is marked
``provider_failed``: the step's next attempt moves down the provider's fallback chain. It is
recognised by the exception's ``status_code`` and its class (the SDKs' connection errors,
httpx's transport errors, Python's ``ConnectionError`` and ``TimeoutError``), never by text.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from agentic.contracts import Price, StepError, Usage, WorkerInfo
from agentic.errors import ConfigError, StepFailure

MAX_MESSAGE_CHARS = 2000


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def step_error_from(exc: BaseException) -> StepError:
    """The ``error`` of a failed StepResult for ``exc`` (see the module docstring)."""
    for link in _chain(exc):
        if isinstance(link, StepFailure):
            return StepError(
                type=link.error_type,
                message=_message(link),
                retryable=link.retryable,
                provider_failed=link.provider_failed,
            )
        if isinstance(link, ConfigError):
            return StepError(type=type(link).__name__, message=_message(link), retryable=False)
    return StepError(
        type=type(exc).__name__,
        message=_message(exc),
        retryable=True,
        provider_failed=provider_failed(exc),
    )


def provider_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the model server failing: see the module
    docstring."""
    transport = _transport_errors()
    for link in _chain(exc):
        code = getattr(link, "status_code", None)
        if isinstance(code, int) and (code in (408, 429) or code >= 500):
            return True
        if isinstance(link, transport):
            return True
    return False


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of the HTTP clients already imported (none is imported
    here: a module that was never loaded raised nothing)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (
        ("openai", "APIConnectionError"),
        ("anthropic", "APIConnectionError"),
        ("httpx", "TransportError"),
    ):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def worker_info(env: Mapping[str, str] | None = None) -> WorkerInfo:
    """This process: host, pid, and the pod name when running in Kubernetes.

    The pod comes from ``POD_NAME`` (the downward API), or from ``HOSTNAME`` when
    ``KUBERNETES_SERVICE_HOST`` shows the process runs in a cluster.
    """
    env = os.environ if env is None else env
    pod = env.get("POD_NAME") or None
    if pod is None and env.get("KUBERNETES_SERVICE_HOST"):
        pod = env.get("HOSTNAME") or None
    return WorkerInfo(host=socket.gethostname(), pid=os.getpid(), pod=pod)


def usage_from(metrics: Any, price: Price | None = None) -> Usage:
    """CrewAI ``UsageMetrics`` -> our :class:`Usage`, costed at ``price`` (None: no cost)."""
    prompt = int(getattr(metrics, "prompt_tokens", 0) or 0) if metrics is not None else 0
    completion = int(getattr(metrics, "completion_tokens", 0) or 0) if metrics is not None else 0
    cost = price.cost(prompt, completion) if price is not None else None
    requests = int(getattr(metrics, "successful_requests", 0) or 0) if metrics is not None else 0
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost, requests=requests
    )


def as_utc(moment: datetime | None) -> datetime | None:
    """CrewAI stamps tasks with naive local times; make them aware UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC)
