"""The scaler service: burst worker Jobs from the queue's lag, for clusters without KEDA.

See :mod:`services.scaler.service`. It never imports CrewAI.
"""

from services.scaler.service import ScalerService, problems

__all__ = ["ScalerService", "problems"]
