"""The worker service: pulls StepSpecs of one pool from JetStream and runs them.

See :mod:`services.worker.service`. CrewAI is imported only in the step processes.
"""

from services.worker.service import WorkerService

__all__ = ["WorkerService"]
