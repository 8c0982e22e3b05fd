"""Imported once by the warm fork server (:mod:`agentic.runtime.warm`), never elsewhere.

Importing it makes the process that imports it die with its parent, loads CrewAI and the
step runtime, and freezes the garbage collector's view of everything loaded so far
(``gc.freeze()``): the step processes forked afterwards share those pages with the server
instead of copying them on their first collection. It starts no thread: forking a process
that has other threads can leave a lock held forever in the child.
"""

from __future__ import annotations

import gc
import signal

from agentic.processes import die_with_parent

# First, so that a caller killed while CrewAI loads (seconds) takes the server along.
die_with_parent(signal.SIGKILL)

from agentic import runtime  # noqa: E402

runtime.setup()

from agentic.runtime import step  # noqa: E402, F401  (the CrewAI import, paid here once)

gc.collect()
gc.freeze()
