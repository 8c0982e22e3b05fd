"""The VRAM of this machine, for offering only the agents that fit it (``min_vram_gb``).

The original tool offered its planner only the agent providers whose ``min_vram_gb`` the
machine's GPU memory reaches. agentic does the same where the steps run on the planning
machine (``inprocess``, ``subprocess``): the VRAM is ``AGENTIC_ASSUME_VRAM_GB`` when set, else
the largest GPU ``nvidia-smi`` reports. Without either (no NVIDIA GPU, no driver tools) the
VRAM is unknown and nothing is hidden: a CPU-only machine may still run small local models.
``nvidia-smi`` is asked only when an offered agent declares ``min_vram_gb`` above 0 (or an
architecture list), once per process.

``hardware.architecture`` lists the processors an agent's model can run on; an agent none of
whose architectures the machine has is not offered either, and one that lists ``cpu`` runs on
the CPU when the VRAM is short. The machine has ``cpu``, ``gpu``
when its VRAM is above 0, and whatever ``AGENTIC_AVAILABLE_ARCHITECTURES`` declares instead
(the only way to say ``tpu``). ``AGENTIC_DISABLE_HARDWARE_FILTER`` offers every agent.
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
    """``agents`` without those this machine cannot run: ``min_vram_gb`` above its VRAM, or a
    ``hardware.architecture`` naming none of its processors.

    Args:
        agents: The agents offered so far, by id.
        settings: ``assume_vram_gb`` declares the VRAM, ``available_architectures`` the
            processors, ``disable_hardware_filter`` turns the filter off.
        backend: Where the steps will run; on workers (``nats``, ``kubernetes``) nothing is
            hidden: ``min_vram_gb`` is a scheduling hint there.
        detect: The VRAM in GB when none is declared (default: ``nvidia-smi``).
    """
    needing = {k: p for k, p in agents.items() if _needs_hardware(p)}
    if backend not in LOCAL_BACKENDS or not needing or settings.disable_hardware_filter:
        return dict(agents)
    vram = settings.assume_vram_gb
    if vram is None:
        vram = (detect or nvidia_vram_gb)()
    hidden: dict[str, str] = {}
    for key, provider in needing.items():
        why = _why_not(provider, vram, _architectures(settings, vram))
        if why:
            hidden[key] = why
    for key, why in sorted(hidden.items()):
        logger.info("not offering agent provider %s: %s", key, why)
    return {k: p for k, p in agents.items() if k not in hidden}


def _needs_hardware(provider: AgentProvider) -> bool:
    return (provider.min_vram_gb or 0) > 0 or bool(
        provider.hardware and provider.hardware.architecture
    )


def _architectures(settings: Settings, vram: float | None) -> set[str]:
    """The processors of this machine: declared, else ``cpu`` and ``gpu`` with VRAM."""
    if settings.available_architectures:
        return set(settings.available_architectures)
    return {"cpu", "gpu"} if vram else {"cpu"}


def _why_not(provider: AgentProvider, vram: float | None, machine: set[str]) -> str | None:
    """Why this machine cannot run ``provider``'s model; None when it can (or cannot tell)."""
    wanted = set(provider.hardware.architecture) if provider.hardware else set()
    if wanted and not wanted & machine:
        return (
            f"hardware.architecture {', '.join(sorted(wanted))}; this machine has "
            f"{', '.join(sorted(machine))}"
        )
    need = provider.min_vram_gb or 0
    on_cpu = "cpu" in wanted and "cpu" in machine  # it can run without a GPU
    if vram is not None and need > vram and not on_cpu:
        return f"min_vram_gb {need:g} > {vram:.1f} GB of VRAM"
    return None


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
