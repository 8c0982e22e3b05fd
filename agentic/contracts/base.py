"""Base model and the explicit encode/decode of every message."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from agentic.errors import DecodeError

SCHEMA_VERSION = 1

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Our own data: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def unset(value: object) -> bool:
    """``exclude_if`` of a field added later: left out of every dump while it is None, so
    records and messages without it read (and are stored, and fingerprinted) as before."""
    return value is None


def encode(model: BaseModel) -> bytes:
    """Canonical JSON bytes of a model (stable key order, no whitespace)."""
    return model.model_dump_json(exclude_none=False).encode()


def decode(cls: type[M], raw: bytes | str, *, max_bytes: int | None = None) -> M:
    """Decode ``raw`` into ``cls`` or raise :class:`DecodeError` carrying the raw bytes."""
    data = raw.encode() if isinstance(raw, str) else raw
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(
            f"{cls.__name__} of {len(data)} bytes exceeds the limit of {max_bytes} bytes",
            raw=data[:1024],
        )
    try:
        return cls.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(
            f"invalid {cls.__name__}: {first_error(exc)}", raw=data, cause=exc
        ) from exc


def first_error(exc: ValidationError) -> str:
    """One readable line from a pydantic error: ``field.path: message``."""
    errors = exc.errors()
    if not errors:
        return str(exc)
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    msg = err.get("msg", "invalid")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


def all_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """Every pydantic error as ``(field.path, message)``."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append((loc, str(err.get("msg", "invalid"))))
    return out


def to_jsonable(model: BaseModel) -> dict[str, Any]:
    """A plain-JSON dict of a model."""
    return model.model_dump(mode="json")
