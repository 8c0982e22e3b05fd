"""What each run event carries in ``data``: one payload model per event type.

The wire format of a :class:`~agentic.contracts.RunEvent` does not change: ``data`` is a
JSON object. These models say which keys each ``type`` puts there, so every key is spelled
once. Producers build ``data`` with ``<Model>(...).as_data()``; consumers read it with
:func:`payload_of`, which picks the model by the event's ``type`` (:data:`EVENT_DATA`, the
discriminator) and validates ``data`` with it.

A payload ignores keys it does not know (a newer producer may add some) and, inside
``error``, keys :class:`~agentic.contracts.StepError` does not know; the keys it knows are
checked strictly (no ``"2"`` for a number, no ``1`` for a boolean).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agentic.contracts.base import first_error
from agentic.contracts.messages import EventType, RunEvent, StepError
from agentic.errors import DecodeError

log = logging.getLogger(__name__)

EndType = Literal["succeeded", "failed", "cancelled"]
END_TYPES: Mapping[str, EndType] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
"""The event types that end a run, each the status the run ends with."""


def _known_keys(model: type[BaseModel]) -> BeforeValidator:
    """Drop the keys of a nested object that ``model`` (which forbids extras) does not know."""

    def keep(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: v for k, v in value.items() if k in model.model_fields}

    return BeforeValidator(keep)


EventError = Annotated[StepError, _known_keys(StepError)]


class Tolerant(BaseModel):
    """Event data: tolerant of keys it does not know, strict on the types of those it knows.

    Unknown keys come from newer producers and are ignored; a known key of the wrong type
    is refused, so a consumer can trust what it reads.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class EventData(Tolerant):
    """The payload of one event type; ``type`` names it."""

    type: ClassVar[EventType]

    def as_data(self) -> dict[str, Any]:
        """The event's ``data``: the keys given when the payload was built (or parsed).

        An optional key a producer did not give stays off the wire (``reused`` is only sent
        when true), and a key given as None is sent as null, as producers always did.
        """
        dumped = self.model_dump(mode="json")
        return {key: value for key, value in dumped.items() if key in self.model_fields_set}


class RequestedData(EventData):
    """``requested``: no producer sends it yet; the type is reserved."""

    type: ClassVar[EventType] = "requested"


class PlannedData(EventData):
    """``planned``: the run's steps are known (sent by the coordinator)."""

    type: ClassVar[EventType] = "planned"
    workflow: str
    steps: list[str]


class StepReadyData(EventData):
    """``step_ready``: an attempt is dispatched."""

    type: ClassVar[EventType] = "step_ready"
    prior_steps: list[str] = Field(description="Steps whose outputs the attempt receives.")
    provider: str | None = Field(
        default=None, description="The agent provider the attempt runs on."
    )
    fallback: bool = Field(
        default=False,
        description="The provider is a fallback: an earlier attempt's provider failed.",
    )


class EventWorker(Tolerant):
    """Which worker process published an event."""

    host: str
    pid: int


class StepStartedData(EventData):
    """``step_started``: a worker began an attempt (a local backend sends no details)."""

    type: ClassVar[EventType] = "step_started"
    worker: EventWorker | None = None
    step_pid: int | None = None
    delivery: int | None = None
    pool: str | None = None


class StepProgressData(EventData):
    """``step_progress``: a note about a step that is out, e.g. ``waiting for <provider>
    budget`` (:mod:`agentic.budget`) from the driver or worker that holds it."""

    type: ClassVar[EventType] = "step_progress"
    message: str | None = None
    note: str | None = Field(default=None, description="Older spelling of ``message``.")

    @property
    def text(self) -> str:
        """The message, else the note; empty when neither."""
        return self.message or self.note or ""


DURATION = (
    "How long the attempt ran, as its StepResult's timing says (started_at to finished_at): "
    "what `agentic show` reports. Sent by whoever holds the result when the event is sent."
)


class StepSucceededData(EventData):
    """``step_succeeded``: an attempt's result is committed (or a replay reused one)."""

    type: ClassVar[EventType] = "step_succeeded"
    output_chars: int | None = None
    reused: bool = False
    reused_from: str | None = Field(
        default=None, description="The run whose result was reused (no producer sends it yet)."
    )
    worker: EventWorker | None = None
    duration_s: float | None = Field(default=None, description=DURATION)


class StepFailedData(EventData):
    """``step_failed``: an attempt failed.

    ``will_retry`` is the coordinator's verdict; a worker reporting its own failure does not
    know it (a ``step_retrying`` event follows when the step is retried).
    """

    type: ClassVar[EventType] = "step_failed"
    error: EventError | None
    will_retry: bool | None = None
    worker: EventWorker | None = None
    duration_s: float | None = Field(default=None, description=DURATION)


class StepRetryingData(EventData):
    """``step_retrying``: the next attempt is dispatched after ``delay_s`` seconds."""

    type: ClassVar[EventType] = "step_retrying"
    delay_s: float


class SucceededData(EventData):
    """``succeeded``: the run's output (cut to fit a message when ``output_truncated``)."""

    type: ClassVar[EventType] = "succeeded"
    output: str
    output_truncated: bool = False


class FailedData(EventData):
    """``failed``: why the run failed."""

    type: ClassVar[EventType] = "failed"
    error: str


class CancelledData(EventData):
    """``cancelled``: why the run was cancelled."""

    type: ClassVar[EventType] = "cancelled"
    error: str


EventPayload = (
    RequestedData
    | PlannedData
    | StepReadyData
    | StepStartedData
    | StepProgressData
    | StepSucceededData
    | StepFailedData
    | StepRetryingData
    | SucceededData
    | FailedData
    | CancelledData
)
"""Any event's payload."""

EVENT_DATA: Mapping[EventType, type[EventPayload]] = {
    model.type: model
    for model in (
        RequestedData,
        PlannedData,
        StepReadyData,
        StepStartedData,
        StepProgressData,
        StepSucceededData,
        StepFailedData,
        StepRetryingData,
        SucceededData,
        FailedData,
        CancelledData,
    )
}
"""The payload model of each event type: the union's discriminator is the event's ``type``."""


def payload_of(event: RunEvent) -> EventPayload:
    """``event.data`` as the payload model of ``event.type``.

    Keys the model does not know are ignored; a known key of the wrong type, or a required
    key missing, is refused.

    Raises:
        DecodeError: ``data`` does not fit the model; ``raw`` holds ``data`` as JSON.
    """
    model = EVENT_DATA[event.type]
    try:
        return model.model_validate(event.data, strict=True)
    except ValidationError as exc:
        raw = json.dumps(event.data, default=str).encode()
        raise DecodeError(
            f"invalid data of a {event.type} event of run {event.run_id} "
            f"(seq {event.seq}): {first_error(exc)}",
            raw=raw,
            cause=exc,
        ) from exc


def payload_or_none(event: RunEvent) -> EventPayload | None:
    """:func:`payload_of`, or None (with a warning) when ``data`` does not fit.

    For readers that show or summarise events: the event's ``type`` still counts even when
    its details cannot be trusted.
    """
    try:
        return payload_of(event)
    except DecodeError as exc:
        log.warning("%s", exc)
        return None


def end_payload(
    status: EndType, *, output: str | None = None, error: str | None = None
) -> SucceededData | FailedData | CancelledData:
    """The payload of the event that ends a run with ``status``."""
    if status == "succeeded":
        return SucceededData(output=output or "")
    if status == "failed":
        return FailedData(error=error or "")
    return CancelledData(error=error or "")


def end_details(event: RunEvent) -> tuple[str | None, str | None]:
    """The output and the error an event that ends a run carries (None for what it lacks)."""
    payload = payload_or_none(event) if event.type in END_TYPES else None
    if isinstance(payload, SucceededData):
        return payload.output, None
    if isinstance(payload, FailedData | CancelledData):
        return None, payload.error
    return None, None


def step_reused(event: RunEvent) -> bool:
    """Whether ``event`` says a step's result was taken over from an earlier run."""
    payload = payload_or_none(event) if event.type == "step_succeeded" else None
    return isinstance(payload, StepSucceededData) and payload.reused
