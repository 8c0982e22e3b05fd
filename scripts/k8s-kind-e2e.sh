#!/usr/bin/env bash
# Runs agentic's two-step workflow (scripts/k8s-e2e-workflow.yaml) on a real, local kind
# cluster (Kubernetes 1.29 or later, kind's default, for native sidecars), twice:
#   1. on the `kubernetes` backend: the coordinator pod creates one Job per step; the first
#      step's Job runs the demo MCP server as a native sidecar (from the worker image);
#   2. on the `nats` backend: `agentic scaler` starts burst worker Jobs from the queue, and the
#      run is submitted from this machine through a port-forward to NATS.
#
# Needs: Docker (a running engine), kind, kubectl, and this repository's virtualenv
# (`make setup`). It is NOT run in CI here: these machines have no Docker engine. The
# in-repository tests cover the same paths against a Kubernetes API server test double
# (tests/k8s_double) and validate every manifest against the real schemas.
#
# NATS demands a credential from every role: the script makes a set with `agentic credentials`
# (kept in $CREDENTIALS, reused by later runs) and gives each role its Secret before applying.
#
# Usage: scripts/k8s-kind-e2e.sh            (KEEP_CLUSTER=1 to leave the cluster running)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-agentic-e2e}
NS=agentic
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WORKER_IMAGE=agentic-worker:${VERSION}
COORDINATOR_IMAGE=agentic-coordinator:${VERSION}
WORKFLOW=scripts/k8s-e2e-workflow.yaml
AGENTIC=${AGENTIC:-.venv/bin/agentic}
LOCAL_NATS_PORT=${LOCAL_NATS_PORT:-14222}
CREDENTIALS=${CREDENTIALS:-.agentic/kind-e2e-credentials}

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (see the header of $0)" >&2; exit 2; }
done
[ -x "$AGENTIC" ] || { echo "missing: $AGENTIC (run make setup)" >&2; exit 2; }

PF_PID=
cleanup() {
  if [ -n "$PF_PID" ]; then kill "$PF_PID" 2>/dev/null || true; fi
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" || true; fi
}
trap cleanup EXIT

echo "== build the images"
docker build -f services/worker/Dockerfile -t "$WORKER_IMAGE" .
docker build -f services/coordinator/Dockerfile -t "$COORDINATOR_IMAGE" .

echo "== create the cluster and load the images (kind nodes cannot pull local images)"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image --name "$CLUSTER" "$WORKER_IMAGE" "$COORDINATOR_IMAGE"

echo "== credentials: one NATS identity per role, the step-signing keys, nats-server's auth.conf"
# One set per cluster: a new set only helps if every Secret and pod gets it together.
[ -f "$CREDENTIALS/auth.conf" ] || "$AGENTIC" credentials --out "$CREDENTIALS" --pool default
kubectl apply -f deploy/base/namespace.yaml
secret() {  # secret NAME --from-file=KEY=PATH: create or replace one Secret
  kubectl -n "$NS" create secret generic "$1" "$2" --dry-run=client -o yaml | kubectl apply -f -
}
secret agentic-nats-auth --from-file=auth.conf="$CREDENTIALS/auth.conf"
secret agentic-nats-coordinator --from-file=seed.nk="$CREDENTIALS/coordinator.nk"
secret agentic-step-signing --from-file=seed.nk="$CREDENTIALS/step-signing.nk"
secret agentic-nats-scaler --from-file=seed.nk="$CREDENTIALS/scaler.nk"
secret agentic-nats-worker-default --from-file=seed.nk="$CREDENTIALS/worker-default.nk"
kubectl -n "$NS" create configmap agentic-step-trust \
  --from-file=trusted-keys="$CREDENTIALS/step-signing.pub" --dry-run=client -o yaml |
  kubectl apply -f -
# The example catalogs use the offline `scripted` provider: no agentic-llm-default Secret.

echo "== deploy (namespace, RBAC, store PVC, NATS, coordinator, scaler)"
kubectl apply -k deploy/overlays/kind
kubectl -n "$NS" rollout status statefulset/nats --timeout=180s
kubectl -n "$NS" rollout status deployment/agentic-coordinator --timeout=180s
kubectl -n "$NS" rollout status deployment/agentic-scaler --timeout=180s

echo "== 1. the kubernetes backend: one Job per step, started by the coordinator pod"
# The workflow file goes in through stdin: the pod's root filesystem is read-only, /tmp is not.
kubectl -n "$NS" exec -i deploy/agentic-coordinator -- \
  sh -c 'cat > /tmp/k8s-e2e.yaml && agentic run /tmp/k8s-e2e.yaml --backend kubernetes' \
  < "$WORKFLOW"
kubectl -n "$NS" get jobs -l app.kubernetes.io/component=step

echo "== 2. the nats backend: burst workers started by agentic scaler"
kubectl -n "$NS" port-forward svc/nats "$LOCAL_NATS_PORT:4222" >/dev/null &
PF_PID=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$LOCAL_NATS_PORT") 2>/dev/null && break; sleep 0.2; done
AGENTIC_NATS_URL="nats://127.0.0.1:$LOCAL_NATS_PORT" \
  AGENTIC_NATS_NKEY_SEED_FILE="$CREDENTIALS/client.nk" \
  "$AGENTIC" run "$WORKFLOW" --backend nats
kubectl -n "$NS" get jobs -l app.kubernetes.io/component=worker

echo "== 3. a NATS pod lost mid-run: the run still succeeds (3 replicas of every stream)"
# The client goes through a port-forward to nats-2 (a port-forward dies with its pod); nats-0,
# which leads some of the streams, is killed while the run's steps execute.
kubectl -n "$NS" port-forward pod/nats-2 "$((LOCAL_NATS_PORT + 1)):4222" >/dev/null &
PF2_PID=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$((LOCAL_NATS_PORT + 1))") 2>/dev/null && break; sleep 0.2; done
AGENTIC_NATS_URL="nats://127.0.0.1:$((LOCAL_NATS_PORT + 1))" \
  AGENTIC_NATS_NKEY_SEED_FILE="$CREDENTIALS/client.nk" \
  "$AGENTIC" run "$WORKFLOW" --backend nats &
RUN_PID=$!
sleep 5
kubectl -n "$NS" delete pod nats-0 --grace-period=0 --force
wait "$RUN_PID"
kill "$PF2_PID"
kubectl -n "$NS" rollout status statefulset/nats --timeout=180s

echo "== the runs, as the cluster's run store holds them"
kubectl -n "$NS" exec deploy/agentic-coordinator -- agentic runs
echo "kind e2e: all three runs succeeded"
