"""Validation of run and step ids before they become paths, subjects or Job names."""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated

from pydantic import AfterValidator

from agentic.errors import UnsafeIdError

SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


def is_safe_id(value: object) -> bool:
    """True when ``value`` can be used as a path segment, subject token and Job-name seed."""
    return isinstance(value, str) and bool(_SAFE_ID.fullmatch(value)) and ".." not in value


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` or raise :class:`UnsafeIdError` naming what it was meant to be."""
    if not is_safe_id(value):
        shown = value if isinstance(value, str) and len(value) <= 40 else f"{str(value)[:40]}…"
        raise UnsafeIdError(
            f"unsafe {what} {shown!r}: must match {SAFE_ID_PATTERN} and not contain '..'"
        )
    return value


def _validate(value: str) -> str:
    if not is_safe_id(value):
        raise ValueError(f"must match {SAFE_ID_PATTERN} and not contain '..'")
    return value


SafeId = Annotated[str, AfterValidator(_validate)]
"""A pydantic string type that only accepts safe ids."""


def new_run_id(prefix: str = "run") -> str:
    """A sortable, unique run id: ``<prefix>-<UTC timestamp>-<random>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return check_id(f"{prefix}-{stamp}-{secrets.token_hex(3)}", "run id")
