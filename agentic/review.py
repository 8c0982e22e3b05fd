"""The post-run review (``review:`` on a workflow, ``agentic run --review``): a last step in
which a provider scores the run's answer against its goal.

:func:`with_review` adds the step when a run is prepared, so it is an ordinary step of the
run's workflow on every backend (retries, timeouts, budgets, replay). It depends on the step
whose output is the run's answer, and that output stays the run's output.
:func:`read_review` reads the reviewer's reply (``{"score": 0-10, "reasons": [...]}``);
the coordinator's state machine records it in ``run.json`` ``review`` and fails the run
when the score is below ``min_score``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentic.contracts import Review, TaskConfig, WorkflowConfig
from agentic.graph import final_step

REVIEW_STEP = "review"
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def with_review(wf: WorkflowConfig, review: Review | None, *, goal: str | None) -> WorkflowConfig:
    """``wf`` with its review step added (``review`` overrides the workflow's own).

    Idempotent: a workflow whose review step exists already (a replay) is returned as is.
    The reviewer must be one of ``wf``'s agent providers (the caller embeds it).
    """
    review = review or wf.review
    if review is None:
        return wf
    if review.step is not None and review.step in wf.task_sequence:
        return wf.model_copy(update={"review": review})
    answer = final_step(wf)
    step_id = _free_id(wf, REVIEW_STEP)
    aim = goal or wf.description or f"the workflow {wf.name!r} on the topic {{topic}}"
    task = TaskConfig(
        id=step_id,
        agent_provider_id=review.provider,
        description=(
            f"You review an answer impartially. The goal was: {aim}\n"
            f"The answer is the output of step `{answer}`. Score from 0 (useless) to 10 "
            "(fully meets the goal) how well it meets the goal, and say why in a few short "
            'reasons. Reply with one JSON object and nothing else: {"score": <number>, '
            '"reasons": ["...", "..."]}'
        ),
        expected_output='{"score": <0-10>, "reasons": [...]}',
        mcp_providers=[],
        depends_on=[answer] if wf.uses_depends_on else None,
    )
    done = review.model_copy(update={"step": step_id, "of": answer})
    return wf.model_copy(
        update={
            "tasks": [*wf.tasks, task],
            "task_sequence": [*wf.task_sequence, step_id],
            "review": done,
        }
    )


def read_review(output: str) -> tuple[float | None, list[str]]:
    """The score (0-10) and reasons in a reviewer's reply; ``(None, [why])`` if it has none."""
    found = _JSON_OBJECT.search(output)
    try:
        data: Any = json.loads(found.group(0)) if found else None
    except ValueError:
        data = None
    score = data.get("score") if isinstance(data, dict) else None
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 10:
        return None, ["the reviewer's reply has no score from 0 to 10"]
    reasons = data.get("reasons") if isinstance(data, dict) else None
    if isinstance(reasons, str):
        reasons = [reasons]
    kept = [str(r) for r in reasons][:10] if isinstance(reasons, list) else []
    return float(score), kept


def _free_id(wf: WorkflowConfig, base: str) -> str:
    taken = {task.id for task in wf.tasks}
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
