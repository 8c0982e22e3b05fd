"""The service images, read as text (no Docker engine here): pinned bases, a non-root user that
matches the manifests, the package installed with its extras, `agentic` as the entrypoint."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from agentic.k8s import jobs

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "services" / name / "Dockerfile" for name in ("worker", "coordinator")]
PINNED = re.compile(r"^[a-z0-9./-]+:\d+\.\d+\.\d+[-.a-z0-9]*$|^[a-z0-9./-]+@sha256:[0-9a-f]{64}$")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            result.append([])
        assert result, f"{path}: an instruction before the first FROM"
        result[-1].append(instruction)
    return result


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_stage_starts_from_a_pinned_base(dockerfile: Path) -> None:
    bases = [
        args.split()[0] for stage in stages(dockerfile) for word, args in stage if word == "FROM"
    ]
    assert len(bases) >= 2, "multi-stage: build and runtime"
    for base in bases:
        assert PINNED.match(base), f"{base} is not pinned to a full version tag or digest"
    assert len(set(bases)) == 1, "the virtualenv is copied between stages: same Python"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_image_runs_agentic_as_the_non_root_user_of_the_manifests(dockerfile: Path) -> None:
    final = stages(dockerfile)[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "the runtime stage must switch user"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(jobs.USER_ID) and gid in ("", str(jobs.USER_ID))
    assert [w for w, _ in final].index("USER") > max(
        i for i, (w, _) in enumerate(final) if w in ("RUN", "COPY")
    ), "USER comes last"
    useradd = " ".join(args for word, args in final if word == "RUN")
    assert f"--uid {jobs.USER_ID}" in useradd and f"--home-dir {jobs.HOME}" in useradd
    entrypoint = [args for word, args in final if word == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoint] == [["agentic"]]
    env = " ".join(args for word, args in final if word == "ENV")
    assert "CREWAI_DISABLE_TELEMETRY=true" in env and f"HOME={jobs.HOME}" in env
    assert any(w == "COPY" and "--from=build" in a for w, a in final), "runtime copies the build"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_package_is_installed_with_extras_that_exist(dockerfile: Path) -> None:
    build = " ".join(args for word, args in stages(dockerfile)[0] if word == "RUN")
    match = re.search(r'pip install "\.\[([a-z0-9,]+)\]"', build)
    assert match, "the build stage installs the package with its extras"
    extras = set(match.group(1).split(","))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"s3", "k8s"} <= extras <= set(declared)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_everything_the_image_copies_is_in_the_build_context(dockerfile: Path) -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for word, args in instructions(dockerfile):
        if word == "COPY" and "--from=" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"{source} is missing from the repository"
                assert source.rstrip("/") not in ignored, f"{source} is excluded by .dockerignore"
