"""``python -m agentic``: the same CLI as the ``agentic`` console script.

Step processes of the ``subprocess`` backend start this way, with the interpreter that runs
the CLI, so they never depend on ``agentic`` being on ``PATH``.
"""

from agentic.cli import main

if __name__ == "__main__":
    main()
