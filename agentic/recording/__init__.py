"""The recording layer: what every driver writes to the run store about the runs it drives.

Below the backends and the services, above the store and the state machine:

* :mod:`~agentic.recording.reactions`: how a driver carries out the state machine's commands
  (the one mapping from commands to a driver's calls);
* :mod:`~agentic.recording.attempts`: attempts and committed results (a step's own record,
  failures it could not record, the last failure committed);
* :mod:`~agentic.recording.outcome`: what became of an attempt, read from the store;
* :mod:`~agentic.recording.journal`: a local run's events and ``run.json``, and the spec of a
  dispatched attempt;
* :mod:`~agentic.recording.cancel`: cancel requests through the store (``cancel.json``).
"""
