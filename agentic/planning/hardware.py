"""The VRAM of this machine, for offering only the agents that fit it (``min_vram_gb``).

The original tool offered its planner only the agent providers whose ``min_vram_gb`` the
machine's GPU memory reaches. agentic does the same where the steps run on the planning
machine (``inprocess``, ``subprocess``): the VRAM is ``AGENTIC_ASSUME_VRAM_GB`` when set, else
the largest GPU ``nvidia-smi`` reports. Without either (no NVIDIA GPU, no driver tools) the
VRAM is unknown and nothing is hidden: a CPU-only machine may still run small local models.
``nvidia-smi`` is asked only when an offered agent declares ``min_vram_gb`` above 0, once per
process.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from collections.abc import Callable, Mapping

from agentic.contracts import AgentProvider
from agentic.settings import Settings

logger = logging.getLogger(__name__)

LOCAL_BACKENDS = frozenset({"inprocess", "subprocess"})
"""Backends whose steps run on the machine that plans them."""

NVIDIA_SMI_TIMEOUT_S = 5.0


def fitting(
    agents: Mapping[str, AgentProvider],
    settings: Settings,
    *,
    backend: str,
    detect: Callable[[], float | None] | None = None,
) -> dict[str, AgentProvider]:
    """``agents`` without those whose ``min_vram_gb`` is more than this machine's VRAM.

    Args:
        agents: The agents offered so far, by id.
        settings: ``assume_vram_gb`` declares the VRAM.
        backend: Where the steps will run; on workers (``nats``, ``kubernetes``) nothing is
            hidden: ``min_vram_gb`` is a scheduling hint there.
        detect: The VRAM in GB when none is declared (default: ``nvidia-smi``).
    """
    needing = {k: p for k, p in agents.items() if (p.min_vram_gb or 0) > 0}
    if backend not in LOCAL_BACKENDS or not needing:
        return dict(agents)
    vram = settings.assume_vram_gb
    if vram is None:
        vram = (detect or nvidia_vram_gb)()
    if vram is None:
        return dict(agents)
    hidden = sorted(k for k, p in needing.items() if (p.min_vram_gb or 0) > vram)
    if hidden:
        logger.info("VRAM %.1f GB: not offering %s (min_vram_gb)", vram, ", ".join(hidden))
    return {k: p for k, p in agents.items() if k not in hidden}


@functools.cache
def nvidia_vram_gb() -> float | None:
    """The memory of the largest NVIDIA GPU in GB, or ``None`` without ``nvidia-smi``."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    try:
        done = subprocess.run(
            [command, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.info("nvidia-smi failed (%s): VRAM unknown", exc)
        return None
    return parse_memory_total(done.stdout) if done.returncode == 0 else None


def parse_memory_total(text: str) -> float | None:
    """The largest of ``nvidia-smi``'s ``memory.total`` lines (MiB) in GB."""
    sizes = []
    for line in text.splitlines():
        try:
            sizes.append(float(line.strip()) / 1024)
        except ValueError:
            continue
    return max(sizes) if sizes else None
