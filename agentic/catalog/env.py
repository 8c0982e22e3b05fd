"""``required_env`` / ``required_env_any`` gating of catalog entries.

An entry whose variables are missing is hidden from planning (``available_*``) and refused
when a run would use it, with a message naming the variables. Only the *names* of variables
are ever looked at here: values are read by the worker that expands ``${VAR}`` placeholders.
An empty value counts as missing (an empty API key is never what the user meant).

An agent provider that names no variable (no ``required_env``, no ``api_key_env``) is gated
by its ``type``, as the original tool gated every provider (:data:`TYPE_CREDENTIALS`):
``openai`` needs ``OPENAI_API_KEY`` unless it has a base URL, ``anthropic`` needs
``ANTHROPIC_API_KEY``, ``huggingface`` one of ``HF_TOKEN`` / ``HUGGINGFACE_API_KEY``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from agentic.contracts import AgentProvider, MCPProvider
from agentic.errors import MissingEnvError

Entry = AgentProvider | MCPProvider

WORKER_BACKENDS = frozenset({"nats", "kubernetes"})
"""Backends whose steps run on workers (or Jobs) with an environment of their own."""


class WorkersEnv(Mapping[str, str]):
    """An environment in which every variable is set: where steps run on workers, their
    ``required_env`` is the workers' business (the coordinator's catalog, a client of the
    ``nats`` or ``kubernetes`` backend). A worker missing one fails the step, naming it."""

    def __getitem__(self, key: str) -> str:
        return "<checked by the worker>"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


WORKERS_ENV = WorkersEnv()


TYPE_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "huggingface": ("HF_TOKEN", "HUGGINGFACE_API_KEY"),
}
"""The variables (one of them) a provider of each type needs when it names none itself."""


def required_variables(entry: Entry) -> list[str]:
    """Variables that must all be set: ``required_env`` plus an agent's ``api_key_env``."""
    names = list(entry.required_env)
    key_env = entry.api_key_env if isinstance(entry, AgentProvider) else None
    if key_env and key_env not in names:
        names.append(key_env)
    return names


def any_of_variables(entry: Entry) -> list[str]:
    """Variables of which one must be set: an MCP provider's ``required_env_any``, or the
    credentials of an agent provider's type when it names no variable (:data:`TYPE_CREDENTIALS`)."""
    if isinstance(entry, MCPProvider):
        return list(entry.required_env_any)
    if entry.required_env or entry.api_key_env:
        return []
    if entry.type == "openai" and (entry.openai_base_url or entry.base_url):
        return []  # an OpenAI-compatible server of one's own needs no OpenAI key
    return list(TYPE_CREDENTIALS.get(entry.type, ()))


def missing_env(entry: Entry, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """What ``env`` lacks for ``entry``.

    Returns:
        ``(missing, any_of)``: the required variables that are not set, and the
        ``required_env_any`` group when none of it is set (else an empty list).
    """
    missing = [name for name in required_variables(entry) if not env.get(name)]
    group = any_of_variables(entry)
    any_of = list(group) if group and not any(env.get(name) for name in group) else []
    return missing, any_of


def is_available(entry: Entry, env: Mapping[str, str]) -> bool:
    """True when every variable ``entry`` needs is set in ``env``."""
    missing, any_of = missing_env(entry, env)
    return not missing and not any_of


def require_env(entry: Entry, env: Mapping[str, str], *, used_by: str | None = None) -> None:
    """Refuse an entry whose variables are missing.

    Args:
        entry: An agent or MCP provider.
        env: The environment to check (names only).
        used_by: The step that needs the entry, for the message.

    Raises:
        MissingEnvError: naming the entry and the variables.
    """
    missing, any_of = missing_env(entry, env)
    if not missing and not any_of:
        return
    what = "agent provider" if isinstance(entry, AgentProvider) else "MCP provider"
    who = f"{what} {entry.id!r}" + (f" (used by step {used_by!r})" if used_by else "")
    needs = []
    if missing:
        needs.append(", ".join(missing))
    if len(any_of) == 1:
        needs.append(any_of[0])
    elif any_of:
        needs.append("one of " + ", ".join(any_of))
    raise MissingEnvError(
        f"{who} needs {' and '.join(needs)} set in the environment",
        entry_id=entry.id,
        variables=missing + any_of,
    )
