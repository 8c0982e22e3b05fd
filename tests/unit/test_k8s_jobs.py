"""Step and worker Job manifests: names, labels, scheduling, secrets, stores, real schemas."""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

import kubernetes_validate
import pytest

from agentic.contracts.messages import ResolvedMCP, StepSpec, TaskText
from agentic.errors import ConfigError
from agentic.k8s import jobs
from agentic.k8s.credentials import NATS_SEED_DIR, SEED_KEY
from agentic.k8s.jobs import (
    label_value,
    step_job_manifest,
    step_job_name,
    step_selector,
    worker_job_manifest,
    worker_job_name,
    worker_selector,
)
from agentic.k8s.scheduling import Scheduling, scheduling_for
from agentic.settings import K8sPool, Settings, get_settings
from tests.factories import OPENAI_WRITER, step_spec

pytestmark = pytest.mark.k8s

K8S_VERSION = "1.31.0"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
FAKE_KEY = "sk-fake-0123456789-never-in-a-manifest"
FAKE_NATS_PASSWORD = "nats-fake-password-never-in-a-manifest"
STORE = "/var/lib/agentic/store"
DIGEST_IMAGE = "registry.example.com/agentic/agentic-worker@sha256:" + "0123456789abcdef" * 4


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "k8s_store_pvc": "agentic-store",
        "k8s_secret_name": "agentic-secrets",
        "nats_url": "nats://nats.agentic.svc.cluster.local:4222",
        "run_store_url": STORE,
    }
    return get_settings(**{**base, **overrides})


# Every Job test starts from this step (an OpenAI provider: its key comes from a Secret).
spec = partial(
    step_spec,
    run_id="run-20261125-120000-abc123",
    topic="agents",
    task=TaskText(description="Research agents", expected_output="notes"),
    agent_provider=OPENAI_WRITER,
    timeout_s=120.0,
    store_url=STORE,
)


def spec_url(s: StepSpec) -> str:
    base = s.store_url.rstrip("/")
    return f"{base}/runs/{s.run_id}/steps/{s.step_id}/spec.json"


def validate(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def secret_env(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env vars read from Secrets: name -> its secretKeyRef."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(manifest)["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def secret_volumes(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        v["name"]: v["secret"]
        for v in manifest["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }


def matches(selector: str, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (part.split("=", 1) for part in selector.split(",")))


# --- names and labels ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("run_id", "step_id"),
    [
        ("run-1", "research"),
        ("Run_With.Dots_and_CAPS", "Step.Two"),
        ("r" * 128, "s" * 128),
        ("0run", "9"),
        ("run-" + "x" * 70, "edit"),
    ],
)
def test_step_job_names_are_valid_dns_labels_of_at_most_63_chars(run_id: str, step_id: str) -> None:
    for attempt in (1, 2, 10):
        name = step_job_name(run_id, step_id, attempt)
        assert len(name) <= 63 and DNS_LABEL.match(name), name
        assert name == step_job_name(run_id, step_id, attempt)


def test_a_retry_gets_a_new_job_name_and_case_differences_do_not_collide() -> None:
    names = {step_job_name("run-1", "research", attempt) for attempt in (1, 2, 3)}
    assert len(names) == 3
    assert step_job_name("run-1", "Step", 1) != step_job_name("run-1", "step", 1)
    long_a, long_b = "r" * 100 + "a", "r" * 100 + "b"
    assert step_job_name(long_a, "s", 1) != step_job_name(long_b, "s", 1)


def test_unsafe_ids_never_become_job_names() -> None:
    with pytest.raises(ConfigError):
        step_job_name("../etc", "research", 1)
    with pytest.raises(ValueError):
        step_job_name("run-1", "research", 0)


def test_long_ids_get_valid_hashed_label_values_and_raw_annotations() -> None:
    s = spec(run_id="Run_" + "x" * 120 + "_", step_id="step.")
    manifest = step_job_manifest(s, settings(), spec_url=spec_url(s))
    labels = manifest["metadata"]["labels"]
    for value in labels.values():
        assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert manifest["metadata"]["annotations"]["agentic/run-id"] == s.run_id
    assert manifest["metadata"]["annotations"]["agentic/step-id"] == "step."
    assert labels["agentic/run-id"] != label_value("Run_" + "x" * 120 + "_y")
    assert matches(step_selector(s.run_id, s.step_id), labels)
    assert matches(step_selector(s.run_id), manifest["spec"]["template"]["metadata"]["labels"])


def test_short_valid_ids_stay_readable_in_labels() -> None:
    manifest = step_job_manifest(spec(), settings(), spec_url=spec_url(spec()))
    labels = manifest["metadata"]["labels"]
    assert labels["agentic/run-id"] == "run-20261125-120000-abc123"
    assert labels["agentic/step-id"] == "research"
    assert labels["agentic/attempt"] == "1"


# --- the step Job ------------------------------------------------------------------------------
def test_a_step_job_runs_execute_step_once_within_its_deadline() -> None:
    s = spec(attempt=3, timeout_s=90.5)
    manifest = step_job_manifest(s, settings(k8s_job_ttl_s=600), spec_url=spec_url(s))

    validate(manifest)
    assert manifest["metadata"]["name"] == step_job_name(s.run_id, s.step_id, 3)
    assert manifest["metadata"]["namespace"] == "agentic"
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 91
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 600
    pod = manifest["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "agentic"
    assert container(manifest)["command"] + container(manifest)["args"] == [
        "agentic",
        "execute-step",
        spec_url(s),
    ]
    env = {e["name"]: e for e in container(manifest)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["CREWAI_DISABLE_TELEMETRY"]["value"] == "true"


def test_a_step_without_timeout_gets_the_default_deadline() -> None:
    s = spec(timeout_s=None)
    manifest = step_job_manifest(s, settings(default_step_timeout_s=45), spec_url=spec_url(s))
    assert manifest["spec"]["activeDeadlineSeconds"] == 45


def test_step_pods_run_as_non_root_on_a_read_only_root_filesystem() -> None:
    manifest = step_job_manifest(spec(), settings(), spec_url=spec_url(spec()))
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(manifest)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container(manifest)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/tmp", jobs.HOME):
        assert "emptyDir" in volumes[mounts[path]]
    assert {"name": "HOME", "value": jobs.HOME} in container(manifest)["env"]


def test_a_pvc_store_is_mounted_and_an_s3_store_needs_no_volume() -> None:
    on_pvc = step_job_manifest(spec(), settings(), spec_url=spec_url(spec()))
    claims = [
        v for v in on_pvc["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claims == [
        {"name": "run-store", "persistentVolumeClaim": {"claimName": "agentic-store"}}
    ]
    assert {"name": "run-store", "mountPath": "/var/lib/agentic"} in container(on_pvc)[
        "volumeMounts"
    ]

    s3 = spec(store_url="s3://bucket/store")
    conf = settings(k8s_store_pvc=None, k8s_store_secret="agentic-store-credentials")
    on_s3 = step_job_manifest(s3, conf, spec_url=spec_url(s3))
    validate(on_s3)
    assert all(
        "persistentVolumeClaim" not in v for v in on_s3["spec"]["template"]["spec"]["volumes"]
    )
    env = {e["name"]: e.get("value") for e in container(on_s3)["env"]}
    assert env["AGENTIC_RUN_STORE_URL"] == "s3://bucket/store"
    # The store's credentials whole, from their own Secret; the LLM Secret never whole.
    assert container(on_s3)["envFrom"] == [
        {"secretRef": {"name": "agentic-store-credentials", "optional": True}}
    ]
    assert set(secret_env(on_s3)) == {"OPENAI_API_KEY"}


@pytest.mark.parametrize(
    ("store_url", "overrides", "message"),
    [
        ("memory://runs", {}, "memory://"),
        ("/var/lib/agentic/store", {"k8s_store_pvc": None}, "AGENTIC_K8S_STORE_PVC"),
        ("/data/elsewhere", {}, "AGENTIC_K8S_STORE_MOUNT_PATH"),
        (".agentic/store", {}, "AGENTIC_K8S_STORE_MOUNT_PATH"),
    ],
)
def test_a_store_pods_cannot_reach_is_a_clear_config_error(
    store_url: str, overrides: dict[str, Any], message: str
) -> None:
    s = spec(store_url=store_url)
    with pytest.raises(ConfigError, match=re.escape(message)):
        step_job_manifest(s, settings(**overrides), spec_url=f"{store_url}/spec.json")


def test_gpu_hints_ask_for_a_gpu_on_gpu_nodes() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    s = spec(
        provider={"min_vram_gb": 24, "node_selector": {"gpu": "a100"}, "tolerations": [toleration]},
        pool="gpu",
    )
    pool = K8sPool(node_selector={"pool": "gpu"}, resources={"requests": {"cpu": "2"}})
    manifest = step_job_manifest(s, settings(k8s_pools={"gpu": pool}), spec_url=spec_url(s))

    validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu", "gpu": "a100"}
    assert pod["tolerations"] == [toleration]
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "2"},
        "limits": {"nvidia.com/gpu": 1},
    }
    assert manifest["metadata"]["labels"]["agentic/pool"] == "gpu"


def test_explicit_provider_resources_win_over_vram_and_pool_hints() -> None:
    s = spec(provider={"min_vram_gb": 24, "resources": {"cpu": "4", "memory": "8Gi"}})
    pool = K8sPool(resources={"limits": {"memory": "1Gi"}})
    manifest = step_job_manifest(s, settings(k8s_pools={"default": pool}), spec_url=spec_url(s))

    validate(manifest)
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    }


def test_a_malformed_scheduling_hint_names_the_provider() -> None:
    s = spec(provider={"resources": {"limits": "lots"}})
    with pytest.raises(ConfigError, match=r"agent provider 'writer'.*resources\.limits"):
        step_job_manifest(s, settings(), spec_url=spec_url(s))


# --- secrets -------------------------------------------------------------------------------------
def test_no_secret_value_ever_reaches_a_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("GITHUB_TOKEN", FAKE_KEY)
    monkeypatch.setenv("AGENTIC_NATS_PASSWORD", FAKE_NATS_PASSWORD)
    mcp = ResolvedMCP(
        id="github",
        resolved={
            "id": "github",
            "required_env": ["GITHUB_TOKEN"],
            "stdio": {"command": "gh-mcp", "env": {"TOKEN": "${GITHUB_TOKEN}"}},
            # On Kubernetes the server is a sidecar, with the same variable by reference.
            "kubernetes": {
                "image": "ghcr.io/example/gh-mcp:1",
                "port": 8082,
                "env": {"TOKEN": "${GITHUB_TOKEN}", "AUTH": "token ${GITHUB_TOKEN}"},
            },
        },
    )
    s = spec(mcp_providers=[mcp])
    conf = Settings()  # reads AGENTIC_NATS_PASSWORD from the environment
    conf = settings(
        nats_password=conf.nats_password,
        k8s_worker_nats_secret="agentic-nats-worker-{pool}",
        k8s_pools={"default": K8sPool(secrets=["agentic-llm-default"])},
    )
    step = step_job_manifest(s, conf, spec_url=spec_url(s))
    worker = worker_job_manifest("default", conf, name="agentic-worker-default-1")

    for manifest in (step, worker):
        validate(manifest)
        text = json.dumps(manifest)
        assert FAKE_KEY not in text
        assert FAKE_NATS_PASSWORD not in text
        plain = {e["name"] for e in container(manifest)["env"] if "value" in e}
        assert not plain & {"OPENAI_API_KEY", "GITHUB_TOKEN", "AGENTIC_NATS_PASSWORD"}
    assert set(secret_env(step)) == {"OPENAI_API_KEY", "GITHUB_TOKEN"}
    [sidecar] = step["spec"]["template"]["spec"]["initContainers"]
    by_name = {e["name"]: e for e in sidecar["env"]}
    assert by_name["TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "GITHUB_TOKEN"
    assert by_name["AUTH"] == {"name": "AUTH", "value": "token $(GITHUB_TOKEN)"}
    assert "envFrom" not in container(step)
    assert container(worker)["envFrom"] == [
        {"secretRef": {"name": "agentic-llm-default", "optional": True}}
    ]


def test_a_step_job_reads_exactly_the_variables_its_providers_name_key_by_key() -> None:
    mcps = [
        ResolvedMCP(id="gh", resolved={"id": "gh", "required_env": ["GITHUB_TOKEN"]}),
        ResolvedMCP(
            id="search", resolved={"id": "search", "required_env_any": ["SERPER_KEY", "BRAVE_KEY"]}
        ),
    ]
    s = spec(provider={"api_key_env": "AZURE_OPENAI_KEY"}, mcp_providers=mcps)
    manifest = step_job_manifest(s, settings(), spec_url=spec_url(s))

    validate(manifest)
    wanted = ["AZURE_OPENAI_KEY", "BRAVE_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY", "SERPER_KEY"]
    assert secret_env(manifest) == {
        var: {"name": "agentic-secrets", "key": var, "optional": True} for var in wanted
    }
    # Nothing else of the Secret: no envFrom of it, no mounted Secret.
    assert "envFrom" not in container(manifest)
    assert secret_volumes(manifest) == {}


def test_secret_variables_without_a_configured_secret_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY.*AGENTIC_K8S_SECRET_NAME"):
        step_job_manifest(spec(), settings(k8s_secret_name=None), spec_url=spec_url(spec()))


def test_a_provider_without_secret_variables_needs_no_secret() -> None:
    s = spec(provider={"type": "scripted", "required_env": [], "script": {"replies": ["ok"]}})
    manifest = step_job_manifest(s, settings(k8s_secret_name=None), spec_url=spec_url(s))
    validate(manifest)
    assert "envFrom" not in container(manifest)
    assert secret_env(manifest) == {}


@pytest.mark.parametrize(
    ("required_env", "message"),
    [(["OPENAI KEY"], "cannot be the key of a Secret"), (["HOME"], "must come from the Secret")],
)
def test_a_variable_that_cannot_come_from_the_secret_is_a_config_error(
    required_env: list[str], message: str
) -> None:
    s = spec(provider={"required_env": required_env})
    with pytest.raises(ConfigError, match=message):
        step_job_manifest(s, settings(), spec_url=spec_url(s))


def test_an_invalid_secret_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="AGENTIC_K8S_SECRET_NAME"):
        step_job_manifest(spec(), settings(k8s_secret_name="LLM_Keys"), spec_url=spec_url(spec()))
    with pytest.raises(ConfigError, match=r"AGENTIC_K8S_POOLS\['default'\]\.secrets"):
        worker_job_manifest(
            "default",
            settings(k8s_pools={"default": K8sPool(secrets=["bad name"])}),
            name="agentic-worker-x",
        )


# --- the worker Job ------------------------------------------------------------------------------
def test_a_worker_job_drains_its_pool_in_burst_mode() -> None:
    name = worker_job_name("gpu", "7f3a9c")
    pool = K8sPool(node_selector={"accelerator": "nvidia"}, resources={"nvidia.com/gpu": 1})
    manifest = worker_job_manifest("gpu", settings(k8s_pools={"gpu": pool}), name=name)

    validate(manifest)
    assert manifest["metadata"]["name"] == name == "agentic-worker-gpu-7f3a9c"
    assert container(manifest)["args"] == ["worker", "--burst", "--pool", "gpu"]
    assert manifest["spec"]["backoffLimit"] == 0
    assert matches(worker_selector("gpu"), manifest["metadata"]["labels"])
    assert not matches(worker_selector("default"), manifest["metadata"]["labels"])
    assert manifest["spec"]["template"]["spec"]["nodeSelector"] == {"accelerator": "nvidia"}
    env = {e["name"]: e.get("value") for e in container(manifest)["env"]}
    assert env["AGENTIC_NATS_URL"] == "nats://nats.agentic.svc.cluster.local:4222"
    assert env["AGENTIC_RUN_STORE_URL"] == STORE


def test_worker_job_names_fit_even_for_long_pools() -> None:
    name = worker_job_name("p" * 128, "abcdef0123456789")
    assert len(name) <= 63 and DNS_LABEL.match(name)
    with pytest.raises(ValueError):
        worker_job_manifest("default", settings(), name="Not_A_Name")


@pytest.mark.parametrize(
    ("nats_url", "message"),
    [(None, "AGENTIC_NATS_URL"), ("nats://user:secret@nats:4222", "credentials")],
)
def test_worker_jobs_need_a_plain_nats_url(nats_url: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        worker_job_manifest("default", settings(nats_url=nats_url), name="agentic-worker-x")


def pools_with_secrets() -> Settings:
    return settings(
        k8s_secret_name="agentic-llm-steps",
        k8s_worker_nats_secret="agentic-nats-worker-{pool}",
        k8s_step_trust_configmap="agentic-step-trust",
        k8s_pools={
            "default": K8sPool(secrets=["agentic-llm-default"]),
            "gpu": K8sPool(secrets=["agentic-llm-gpu", "agentic-hf-gpu"]),
        },
    )


def test_a_worker_job_mounts_its_pools_nats_seed_and_gets_only_its_pools_secrets() -> None:
    manifest = worker_job_manifest("gpu", pools_with_secrets(), name="agentic-worker-gpu-1")

    validate(manifest)
    assert container(manifest)["envFrom"] == [
        {"secretRef": {"name": "agentic-llm-gpu", "optional": True}},
        {"secretRef": {"name": "agentic-hf-gpu", "optional": True}},
    ]
    # Its own identity, as a file only its user can read, and nothing of another pool's.
    assert secret_volumes(manifest) == {
        "nats-credential": {
            "secretName": "agentic-nats-worker-gpu",
            "items": [{"key": SEED_KEY, "path": SEED_KEY}],
            "defaultMode": 0o400,
        }
    }
    assert {"name": "nats-credential", "mountPath": NATS_SEED_DIR, "readOnly": True} in container(
        manifest
    )["volumeMounts"]
    env = {e["name"]: e for e in container(manifest)["env"]}
    assert env["AGENTIC_NATS_NKEY_SEED_FILE"]["value"] == f"{NATS_SEED_DIR}/{SEED_KEY}"
    assert secret_env(manifest) == {}
    text = json.dumps(manifest)
    for other in ("agentic-llm-default", "agentic-llm-steps", "agentic-nats-worker-default"):
        assert other not in text


def test_worker_jobs_read_the_trusted_step_keys_from_an_optional_config_map() -> None:
    manifest = worker_job_manifest("default", pools_with_secrets(), name="agentic-worker-x")
    env = {e["name"]: e for e in container(manifest)["env"]}
    assert env["AGENTIC_STEP_TRUSTED_KEYS"]["valueFrom"] == {
        "configMapKeyRef": {"name": "agentic-step-trust", "key": "trusted-keys", "optional": True}
    }


def test_a_pools_own_nats_secret_wins_over_the_naming_setting() -> None:
    conf = settings(
        k8s_worker_nats_secret="agentic-nats-worker-{pool}",
        k8s_pools={"GPU_1": K8sPool(nats_secret="agentic-nats-worker-gpu-1")},
    )
    manifest = worker_job_manifest("GPU_1", conf, name="agentic-worker-gpu-1-x")
    assert secret_volumes(manifest)["nats-credential"]["secretName"] == "agentic-nats-worker-gpu-1"

    without = settings(k8s_worker_nats_secret="agentic-nats-worker-{pool}")
    with pytest.raises(ConfigError, match=r"agentic-nats-worker-GPU_1.*nats_secret"):
        worker_job_manifest("GPU_1", without, name="agentic-worker-gpu-1-x")


def test_without_a_nats_secret_setting_worker_jobs_carry_no_credential() -> None:
    manifest = worker_job_manifest("default", settings(), name="agentic-worker-x")
    assert secret_volumes(manifest) == {}
    assert "envFrom" not in container(manifest)
    names = {e["name"] for e in container(manifest)["env"]}
    assert not names & {"AGENTIC_NATS_NKEY_SEED_FILE", "AGENTIC_STEP_TRUSTED_KEYS"}


def test_worker_jobs_get_the_store_secret_apart_from_the_pools_secrets() -> None:
    conf = pools_with_secrets().model_copy(
        update={
            "run_store_url": "s3://bucket/store",
            "k8s_store_secret": "agentic-store-credentials",
        }
    )
    manifest = worker_job_manifest("default", conf, name="agentic-worker-x")
    validate(manifest)
    assert container(manifest)["envFrom"] == [
        {"secretRef": {"name": "agentic-llm-default", "optional": True}},
        {"secretRef": {"name": "agentic-store-credentials", "optional": True}},
    ]


# --- scheduling and images: only from the worker side's own settings ------------------------
def test_worker_job_scheduling_comes_from_the_pool_settings_alone() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    pool = K8sPool(
        resources={"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}},
        node_selector={"accelerator": "nvidia"},
        tolerations=[toleration],
    )
    assert scheduling_for(None, pool) == Scheduling(
        resources={"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}},
        node_selector={"accelerator": "nvidia"},
        tolerations=[toleration],
    )
    assert scheduling_for(None, None) == Scheduling()

    manifest = worker_job_manifest("gpu", settings(k8s_pools={"gpu": pool}), name="agentic-w-1")
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator": "nvidia"}
    assert pod["tolerations"] == [toleration]
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "2"},
        "limits": {"memory": "4Gi"},
    }
    bare = worker_job_manifest("other", settings(k8s_pools={"gpu": pool}), name="agentic-w-2")
    assert not {"nodeSelector", "tolerations"} & set(bare["spec"]["template"]["spec"])
    assert "resources" not in container(bare)


def test_an_image_pinned_by_digest_is_used_as_it_is() -> None:
    conf = settings(k8s_image=DIGEST_IMAGE)
    step = step_job_manifest(spec(), conf, spec_url=spec_url(spec()))
    worker = worker_job_manifest("default", conf, name="agentic-worker-x")
    for manifest in (step, worker):
        validate(manifest)
        assert container(manifest)["image"] == DIGEST_IMAGE
