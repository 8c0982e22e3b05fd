"""The failure types agentic itself gives a step attempt (``StepError.type``).

A step that fails on its own reports the type of what it raised (an LLM's error, a tool's);
these are the failures a driver or the coordinator observes and records for it. Each is
defined here once, with whether another attempt can help.

=====================  ==========  ==============================================================
type                   retryable   when
=====================  ==========  ==============================================================
``StepTimeout``        yes         the attempt ran past its ``timeout_s``
``StepCrashed``        yes         its process exited without recording anything
``StepLaunchFailed``   yes         its process or Job could not be started
``DeadLettered``       no          its message ran out of deliveries (every worker died on it)
``StepNotPublishable`` no          its message cannot be queued (too large, a bad pool)
``StepRefused``        no          a worker refused to run it (docs/security.md)
``AttemptsExhausted``  yes         its attempts had all ended before the coordinator restarted
``StepFailed``         no          a failed result that says nothing more
=====================  ==========  ==============================================================
"""

from __future__ import annotations

TIMEOUT = "StepTimeout"
CRASHED = "StepCrashed"
LAUNCH_FAILED = "StepLaunchFailed"
DEAD_LETTERED = "DeadLettered"
NOT_PUBLISHABLE = "StepNotPublishable"
REFUSED = "StepRefused"
ATTEMPTS_EXHAUSTED = "AttemptsExhausted"
UNRECORDED = "StepFailed"
