"""The coordinator service: submits, drives and cancels runs on NATS JetStream.

See :mod:`services.coordinator.service`. It never imports CrewAI.
"""

from services.coordinator.service import CoordinatorService

__all__ = ["CoordinatorService"]
