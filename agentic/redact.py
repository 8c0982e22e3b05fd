"""Secret values out of everything agentic writes, publishes, logs or prints.

A model or gateway that echoes an API key in an error message, or a user who pastes a token
into a task, must not put that value into an attempt file, ``run.json``, an event, a log line
or a terminal. Each process keeps one :class:`Redactor` (:func:`current`) holding the values
of the environment variables that are secret to it:

* every variable a catalog entry names (``required_env``, ``required_env_any``,
  ``api_key_env``, ``${VAR}`` placeholders): :func:`protect_entries`;
* every variable whose name looks like a credential (``*KEY*``, ``*TOKEN*``, ``*SECRET*``,
  ``*PASSWORD*``, ``*CREDENTIAL*`` …): :func:`protect_environment`.

Their values are replaced by ``***`` at the few places every byte passes through: the run
store's writes, the bus's publishes, the log handlers (:class:`RedactingFilter`) and the CLI's
error and output printing. Values shorter than :data:`MIN_SECRET_CHARS` are not masked: they
would mask ordinary words (``1``, ``true``). :func:`mask_url` hides the credentials inside a URL.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_CHARS = 6
CREDENTIAL_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Redactor:
    """Replaces known secret values with ``***``.

    Args:
        values: The secret values (shorter ones than :data:`MIN_SECRET_CHARS` are ignored).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self.add(values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, values: Iterable[str]) -> None:
        """Mask these values too."""
        fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_CHARS}
        with self._lock:
            if fresh <= self._values:
                return
            self._values |= fresh
            forms = {form for v in self._values for form in _forms(v)}
            # Longest first: a secret that contains another is masked whole.
            ordered = sorted(forms, key=len, reverse=True)
            self._text = re.compile("|".join(re.escape(f) for f in ordered))
            self._bytes = re.compile(b"|".join(re.escape(f.encode()) for f in ordered))

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        pattern = self._text
        return value if pattern is None else pattern.sub(MASK, value)

    def bytes(self, data: bytes) -> bytes:
        """``data`` (UTF-8 text or JSON) with every secret, raw or JSON-escaped, replaced."""
        pattern = self._bytes
        return data if pattern is None else pattern.sub(MASK.encode(), data)

    def data(self, value: Any) -> Any:
        """A JSON-like value with every string redacted (dicts and lists copied)."""
        if self._text is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def _forms(value: str) -> set[str]:
    """A value as it appears in text and inside JSON strings."""
    return {
        value,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value, ensure_ascii=True)[1:-1],
    }


_CURRENT = Redactor()


def current() -> Redactor:
    """This process's redactor."""
    return _CURRENT


def protect_environment(env: Mapping[str, str] | None = None) -> Redactor:
    """Mask the values of every variable whose name looks like a credential."""
    env = os.environ if env is None else env
    _CURRENT.add(value for name, value in env.items() if CREDENTIAL_NAME.search(name))
    return _CURRENT


def protect_names(names: Iterable[str], env: Mapping[str, str] | None = None) -> Redactor:
    """Mask the values of the variables ``names`` (those that are set)."""
    env = os.environ if env is None else env
    _CURRENT.add(env[name] for name in names if env.get(name))
    return _CURRENT


def entry_variables(entry: Mapping[str, Any]) -> set[str]:
    """The environment variables a catalog entry (an agent or MCP provider, as a dict) names."""
    found: set[str] = set()
    for key in ("required_env", "required_env_any"):
        found.update(v for v in entry.get(key) or () if isinstance(v, str))
    if isinstance(entry.get("api_key_env"), str):
        found.add(entry["api_key_env"])
    for field in _PLACEHOLDER_FIELDS:
        found.update(_PLACEHOLDER.findall(json.dumps(entry.get(field) or {})))
    return found


# Fields of catalog entries whose values may hold ${VAR}: MCP transports and sidecars, an
# agent's URLs and request headers, a Python tool's constructor arguments.
_PLACEHOLDER_FIELDS = (
    "args",
    "stdio",
    "streamable_http",
    "kubernetes",
    "headers",
    "openai_base_url",
    "anthropic_base_url",
    "ollama_host",
    "base_url",
)


def protect_entries(
    entries: Iterable[Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> Redactor:
    """Mask the values of every variable the catalog entries name."""
    names: set[str] = set()
    for entry in entries:
        names |= entry_variables(entry)
    return protect_names(names, env)


def mask_url(url: str) -> str:
    """``url`` with the credentials of its user-info part hidden (``nats://u:***@host``).

    A user name without a password is a token in NATS URLs, so it is hidden too.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return _CURRENT.text(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if sep else MASK
    return _CURRENT.text(urlunsplit(parts._replace(netloc=f"{shown}@{host}")))


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _CURRENT
        if not redactor:
            return True
        message = record.getMessage()
        masked = redactor.text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (default: the root)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingStream:
    """A text stream that masks secrets in what is written to it, delegating the rest.

    CrewAI prints its own messages (an LLM's error, say) straight to ``sys.stdout`` and
    ``sys.stderr``, past every log handler; a process that runs steps wraps both
    (:func:`mask_standard_streams`). A secret split across two writes is not caught: prints
    write whole messages.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_CURRENT.text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def mask_standard_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`RedactingStream` (once)."""
    import sys

    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
