"""Execution backends, registered by name and loaded lazily.

``get_backend("subprocess")`` imports ``agentic.backends.subprocess`` only when asked, so the
core never imports NATS or Kubernetes at import time. Each backend module defines
``create_backend(**options) -> Backend`` (see :mod:`agentic.backends.base`).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from agentic.backends.base import (
    Backend,
    EventCallback,
    StepHealth,
    StepLauncher,
)
from agentic.contracts import BACKEND_NAMES, backend_name
from agentic.errors import ConfigError

BACKENDS: tuple[str, ...] = BACKEND_NAMES
"""Every backend name, as ``AGENTIC_EXECUTION_BACKEND`` and ``--backend`` accept them."""

# Third-party modules a backend needs beyond the core install: (module, what to install).
_REQUIRES: dict[str, tuple[tuple[str, str], ...]] = {
    "kubernetes": (("kubernetes", "agentic[k8s]"),),
    "nats": (("nats", "nats-py"),),
}


def get_backend(name: str, **options: Any) -> Backend:
    """The backend called ``name``, built with ``options``.

    Raises:
        ConfigError: ``name`` is not a backend (the message lists the valid names), or the
            backend needs a package that is not installed (the message says what to
            ``pip install``).
    """
    backend_name(name)
    for module_name, install in _REQUIRES.get(name, ()):
        if importlib.util.find_spec(module_name) is None:
            raise _missing(name, module_name, install)
    try:
        module = importlib.import_module(f"agentic.backends.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"agentic.backends.{name}":
            raise ConfigError(f"backend {name!r} is not available in this installation") from exc
        missing = (exc.name or "?").split(".")[0]
        raise _missing(name, missing, missing) from exc
    backend: Backend = module.create_backend(**options)
    return backend


def _missing(backend: str, module: str, install: str) -> ConfigError:
    return ConfigError(
        f"backend {backend!r} needs the Python package {module!r}, which is not installed: "
        f"pip install {install}"
    )


__all__ = [
    "BACKENDS",
    "Backend",
    "EventCallback",
    "StepHealth",
    "StepLauncher",
    "get_backend",
]
