"""agentic: durable, replayable CrewAI agent workflows on four execution backends.

The core package never imports CrewAI, NATS or Kubernetes at import time; those are
loaded lazily by the modules that need them (``agentic.runtime``, ``agentic.bus``,
``agentic.backends.kubernetes``).
"""

__version__ = "0.1.0"
