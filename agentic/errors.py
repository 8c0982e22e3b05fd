"""The one error tree of agentic.

Every error the library raises on purpose derives from :class:`AgenticError`::

    AgenticError
    ├── ConfigError            bad catalog, workflow, settings or CLI input (CLI exit 2)
    │   ├── CatalogError       a YAML file or field is wrong (names file and field)
    │   ├── UnsafeIdError      an id that cannot become a path, subject or Job name
    │   ├── MissingEnvError    an entry's required environment variables are not set
    │   └── UnknownRunError    a run or step id that the store does not hold
    ├── DecodeError            bytes that are not a valid message (carries the raw bytes)
    ├── StoreError             the run store failed (I/O, permissions, backend)
    │   └── DocumentTooLargeError  a document over the size limit was not written
    ├── BusError               NATS / JetStream failed
    │   └── MessageTooLargeError   a message over the size limit was not published
    ├── StepFailure            one step attempt failed (raised; contracts.StepError is its record)
    │   ├── RetryableStepFailure     worth another attempt (rate limit, timeout, crash)
    │   └── FatalStepFailure         will fail again (bad config, tool refused)
    ├── PlanError              the planner's output cannot become a workflow
    └── CancelledError         the run was cancelled

Retry semantics are explicit: a :class:`StepFailure`, :class:`StoreError` or :class:`BusError`
carries ``retryable`` (may the same operation succeed later?); code decides by type or by that
flag, never by matching message strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class AgenticError(Exception):
    """Root of every error agentic raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.step_id = step_id
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        return self.message


class ConfigError(AgenticError):
    """Bad configuration or input: the CLI exits 2 and nothing is written."""


class CatalogError(ConfigError):
    """A catalog or workflow file is wrong; the message names the file and the field."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        where = file or "<input>"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.field = field
        self.reason = message


class UnsafeIdError(ConfigError):
    """An id that is not ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`` (or contains ``..``)."""


class MissingEnvError(ConfigError):
    """A catalog entry needs environment variables that are not set."""

    def __init__(self, message: str, *, entry_id: str, variables: list[str]) -> None:
        super().__init__(message)
        self.entry_id = entry_id
        self.variables = variables

    @classmethod
    def check(cls, entry: str, entry_id: str, names: Iterable[str], env: Mapping[str, str]) -> None:
        """Raise when a variable of ``names`` is unset or empty in ``env``.

        Args:
            entry: What needs them, for the message (``agent provider``, ``MCP provider``).
        """
        missing = [name for name in names if not env.get(name)]
        if missing:
            raise cls(
                f"{entry} {entry_id!r} needs environment variables that are not set: "
                + ", ".join(missing),
                entry_id=entry_id,
                variables=missing,
            )


class UnknownRunError(ConfigError):
    """A run id (or step id of a run) that the store does not hold."""


class DecodeError(AgenticError):
    """Bytes that do not decode into the expected message; ``raw`` keeps them."""

    def __init__(self, message: str, *, raw: bytes = b"", cause: BaseException | None = None):
        super().__init__(message, cause=cause)
        self.raw = raw


class StoreError(AgenticError):
    """The run store could not read or write (``retryable``: an outage may end)."""

    retryable: bool = True


class DocumentTooLargeError(StoreError):
    """A document over the store's size limit: writing it again fails again."""

    retryable = False


class BusError(AgenticError):
    """NATS or JetStream failed (``retryable``: a server may come back)."""

    retryable: bool = True


class MessageTooLargeError(BusError):
    """A message over a size limit: publishing it again fails again.

    ``limit`` is ``max_message_bytes``, or None when the server refused the message.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        size: int,
        limit: int | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id)
        self.size = size
        self.limit = limit


class StepFailure(AgenticError):
    """One attempt of one step failed."""

    retryable: bool = False
    provider_failed: bool = False
    """The model provider failed (rate limit, server error, timeout, refused connection):
    the next attempt moves down the provider's fallback chain."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        cause: BaseException | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id, cause=cause)
        self.error_type = error_type or type(self).__name__


class RetryableStepFailure(StepFailure):
    """A failure worth another attempt (rate limit, transient network, timeout, crash)."""

    retryable = True


class ProviderUnavailable(RetryableStepFailure):
    """The model provider cannot serve the step now (what a 429 or a 5xx past the client's
    retries says): worth another attempt, on the next provider of the fallback chain."""

    provider_failed = True


class FatalStepFailure(StepFailure):
    """A failure that will happen again: retrying wastes tokens."""

    retryable = False


class PlanError(AgenticError):
    """The planner's output cannot become a valid workflow.

    ``raw_output`` is the planner's last reply; ``plan`` (when set) is the whole planning
    record (prompt, every reply and its problems) that a failed run keeps in ``run.json``.
    """

    def __init__(
        self,
        message: str,
        *,
        raw_output: str = "",
        plan: dict[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.raw_output = raw_output
        self.plan = plan


class CancelledError(AgenticError):
    """The run was cancelled."""
