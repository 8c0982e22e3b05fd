"""What the planner learns from the store: matches from the knowledge base for the goal and
the offered providers' track records (:mod:`agentic.knowledge`), as a prompt section.

Gathering never fails planning: an index that cannot be opened or read is logged and the
prompt goes without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentic.knowledge import Match, TrackRecord, open_index, track_records
from agentic.planning.plan import Offer
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannerKnowledge:
    """What a planner prompt shows beyond the catalog."""

    matches: list[Match] = field(default_factory=list)
    records: list[TrackRecord] = field(default_factory=list)
    max_chars: int = 600
    min_success_rate: float = 0.5
    min_steps: int = 5

    def sources(self) -> list[str]:
        """What the prompt cited, for the planning record."""
        return [match.source for match in self.matches]

    def flagged(self) -> list[str]:
        return [
            r.provider
            for r in self.records
            if r.flagged(min_success_rate=self.min_success_rate, min_steps=self.min_steps)
        ]


def gather(goal: str, offer: Offer, settings: Settings, store: RunStore) -> PlannerKnowledge:
    """Matches for ``goal`` and the track records of ``offer``'s agents."""
    try:
        with open_index(settings, store) as index:
            matches = index.search(goal, limit=settings.kb_top_k) if settings.kb_top_k else []
            records = track_records(index, providers=sorted(offer.agents))
    except Exception as exc:  # the planner works without it
        log.warning("the knowledge base is not available to the planner: %s", exc)
        return PlannerKnowledge()
    return PlannerKnowledge(
        matches=matches,
        records=records,
        max_chars=settings.kb_max_chars,
        min_success_rate=settings.planner_min_success_rate,
        min_steps=settings.planner_min_steps,
    )


def knowledge_sections(knowledge: PlannerKnowledge) -> list[str]:
    """The prompt's sections: knowledge matches, then track records (none when empty)."""
    parts = []
    if knowledge.matches:
        lines = [
            "Knowledge from earlier runs and added documents (most relevant first; each "
            "labelled with its source; it may be outdated, use what helps):"
        ]
        for match in knowledge.matches:
            text = " ".join(match.text.split())
            if len(text) > knowledge.max_chars:
                text = text[: knowledge.max_chars] + " […]"
            lines.append(f"- [{match.source}] {match.title.strip()[:120]}: {text}")
        parts.append("\n".join(lines))
    if knowledge.records:
        lines = [
            "Track records of the agents above (attempts, share that succeeded, median "
            "seconds per attempt, tokens per step, review score):"
        ]
        for record in knowledge.records:
            line = (
                f"- {record.provider}: {record.attempts} attempts, "
                f"{record.success_rate:.0%} succeeded"
            )
            if record.median_s is not None:
                line += f", median {record.median_s:.1f}s"
            if record.tokens_per_step is not None:
                line += f", {record.tokens_per_step:.0f} tokens/step"
            if record.review_score is not None:
                line += f", review {record.review_score:.1f}/10"
            if record.flagged(
                min_success_rate=knowledge.min_success_rate, min_steps=knowledge.min_steps
            ):
                line += (
                    f". FLAGGED: below {knowledge.min_success_rate:.0%} success; last failure: "
                    f"{(record.last_failure or 'unknown')[:160]}"
                )
            lines.append(line)
        parts.append("\n".join(lines))
    return parts
