"""The backends that run one process or Job per step attempt, and what they share.

* :class:`~agentic.backends.local.driver.LocalDriver`: one run driven by the state machine
  and a :class:`~agentic.backends.base.StepLauncher`, in the calling process;
* :class:`~agentic.backends.local.launched.LauncherBackend`: a backend made of the driver
  and a launcher per run (``subprocess`` and ``kubernetes`` are this);
* :class:`~agentic.backends.local.threads.ThreadLauncher`: attempts as threads, for tests
  and tools;
* :func:`~agentic.backends.local.execute.execute_spec_url`: the step's side, what
  ``agentic execute-step`` (a step process or a step Job) runs.
"""
