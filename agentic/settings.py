"""Every setting of agentic, read from ``AGENTIC_*`` environment variables.

This is the only module that reads agentic's own environment variables. Catalog
``required_env`` names and ``${VAR}`` placeholders are expanded by the worker runtime,
which reads the variables a catalog entry names, never ours.

``docs/settings.md`` is generated from this model (``python -m agentic.settings``); a test
fails when it drifts.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentic.contracts.messages import BackendName


class K8sPool(BaseModel):
    """Scheduling of one worker pool's Jobs (an entry of ``AGENTIC_K8S_POOLS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resources: dict[str, Any] | None = Field(
        None, description="Requests/limits: `{requests, limits}` or one flat mapping for both."
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    secrets: list[str] = Field(
        default_factory=list,
        description="Secrets given whole (`envFrom`, optional) to this pool's worker Jobs: the "
        "keys its providers need, nothing of other pools.",
    )
    nats_secret: str | None = Field(
        None,
        description="Secret holding this pool's worker nkey seed; unset: "
        "`AGENTIC_K8S_WORKER_NATS_SECRET`.",
    )


class Settings(BaseSettings):
    """agentic settings; each field is the env var ``AGENTIC_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTIC_", extra="ignore", frozen=True, populate_by_name=True
    )

    # --- running -----------------------------------------------------------------------
    execution_backend: BackendName = Field(
        "inprocess", description="Backend used when `agentic run` gets no `--backend`."
    )
    run_store_url: str = Field(
        ".agentic/store",
        # AGENTIC_RUN_STORE_PATH: the original tool's name (docs/compatibility.md)
        validation_alias=AliasChoices("AGENTIC_RUN_STORE_URL", "AGENTIC_RUN_STORE_PATH"),
        description="fsspec URL or path of the run store: `file://`, `memory://`, `s3://`, a "
        "path (`AGENTIC_RUN_STORE_PATH`, the original tool's name, is read too).",
    )
    config_dir: str = Field(
        "config",
        description="Catalog root with `agent_providers/`, `mcp_providers/`, `workflows/`.",
    )
    extra_config_dirs: list[str] = Field(
        default_factory=list,
        description="More catalog roots, as a JSON list; later roots override earlier ids.",
    )
    extra_agent_providers_catalog_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More folders of agent provider YAML files (the files themselves, not "
        "catalog roots), separated by the OS path separator: the original tool's variable. "
        "Read after the catalog roots, so their ids override.",
    )
    extra_mcp_providers_path: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More folders of MCP provider YAML files, separated by the OS path "
        "separator: the original tool's variable. Read after the catalog roots.",
    )
    default_pool: str = Field("default", description="Worker pool of steps that name none.")
    log_level: str = Field("WARNING", description="Python log level of the CLI and services.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines of the CLI, services and step processes: `text` (`time level "
        "logger ids: message`) or `json` (one object per line with `run_id`, `step_id`, "
        "`attempt` where they apply; docs/observability.md).",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of the Prometheus `/metrics` endpoint of `agentic coordinator`, "
        "`worker` and `scaler` (one per process; `deploy/` uses 9464); unset: no endpoint; "
        "0: a free port, logged (docs/observability.md).",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the metrics endpoint binds to; `0.0.0.0` where Prometheus "
        "scrapes from another machine (`deploy/` sets it).",
    )
    crewai_telemetry: bool = Field(
        False,
        description="Let CrewAI send telemetry. Off by default: offline it adds ~10 s per kickoff.",
    )

    # --- steps and retries -------------------------------------------------------------
    default_step_timeout_s: float = Field(
        600.0, description="Timeout of a step that sets no `timeout_s`."
    )
    default_retries: int = Field(
        2, description="Retries of a step that sets no `retries` (retryable errors only)."
    )
    retry_backoff_base_s: float = Field(1.0, description="First retry delay; doubles per attempt.")
    retry_backoff_max_s: float = Field(60.0, description="Upper bound of one retry delay.")
    retry_jitter: float = Field(
        0.2, description="Random fraction added to or removed from each retry delay."
    )
    prior_output_max_chars: int = Field(
        4000,
        description="Characters of each dependency's output put into a step's description "
        "(the store keeps all).",
    )
    subprocess_max_parallel: int = Field(
        4, description="Step processes the `subprocess` backend runs at once."
    )
    max_message_bytes: int = Field(
        1_048_576, description="Largest RunRequest, StepSpec or event accepted."
    )
    max_document_bytes: int = Field(
        67_108_864,
        ge=1_048_576,
        description="Largest JSON document the run store reads or writes (a step's result, "
        "`run.json`): a step's output may be this big, whatever the bus carries.",
    )
    step_isolation: Literal["process", "thread"] = Field(
        "process",
        description="How a worker runs its steps (`agentic worker --isolation`): `process`, "
        "a warm step process per slot that cancel and timeout kill at once; `thread`, the "
        "slots' steps as threads of a shared host process, for I/O-bound (LLM) pools: far "
        "less memory per step, but a stopped step's thread runs on until its host is "
        "recycled, and a crash takes the host's other steps along (docs/runtime.md).",
    )
    step_process_max_steps: int = Field(
        100,
        ge=1,
        description="A worker's step process (or thread host) is replaced by a fresh fork "
        "after running this many steps.",
    )
    step_process_max_rss_mb: int = Field(
        1024,
        ge=64,
        description="A worker's step process (or thread host) whose resident memory passes "
        "this many MB is replaced before its next step.",
    )

    # --- trust and limits ----------------------------------------------------------------
    allow_inline_providers: bool = Field(
        False,
        description="Accept submitted workflows that define agent or MCP providers inline "
        "(commands, URLs, key variables) instead of naming catalog ids, and let workers run "
        "them. Only for stacks whose every client may run commands as the workers "
        "(`agentic up` and the embedded stack turn it on).",
    )
    max_request_bytes: int = Field(
        262_144, gt=0, description="Largest submit request the coordinator accepts."
    )
    max_workflow_tasks: int = Field(200, gt=0, description="Most tasks one workflow may have.")
    max_run_spec_bytes: int = Field(
        8_388_608,
        gt=0,
        description="Most bytes the StepSpecs of one run may add up to (before prior outputs).",
    )
    step_signing_seed_file: str | None = Field(
        None,
        description="Coordinator: nkey seed file that signs StepSpecs and kill notices; "
        "unset: a fresh key per start, its public key published in the run store (keys/).",
    )
    step_trusted_keys: str | None = Field(
        None,
        description="Workers: comma-separated public keys whose signed steps they run; unset: "
        "the keys coordinators published in the run store (keys/).",
    )
    nats_inbox_prefix: str | None = Field(
        None,
        description="Inbox prefix of this process's NATS connection; unset: `_INBOX` for "
        "clients, `_agentic_inbox.<identity>` for services.",
    )
    nats_credentials_dir: str = Field(
        "~/.agentic/credentials",
        description="Where `agentic up` leaves the client credential of its server "
        "(`<host>_<port>.nk`, readable by you alone) and where clients look for it.",
    )
    coordinator_stall_s: float = Field(
        60.0,
        gt=0,
        description="`agentic coordinator --check` reports a coordinator whose event loop or "
        "consumers have made no progress for this long.",
    )

    # --- NATS ----------------------------------------------------------------------------
    nats_url: str | None = Field(
        None,
        description="Comma-separated NATS URLs. Unset: `nats` backend starts an embedded server.",
    )
    nats_user: str | None = Field(None, description="NATS user name.")
    nats_password: str | None = Field(None, description="NATS password.")
    nats_token: str | None = Field(None, description="NATS token.")
    nats_nkey_seed_file: str | None = Field(None, description="Path of an nkey seed file.")
    nats_creds_file: str | None = Field(None, description="Path of a NATS credentials (JWT) file.")
    nats_tls_ca_file: str | None = Field(
        None, description="CA bundle that verifies the NATS server."
    )
    nats_tls_cert_file: str | None = Field(None, description="Client certificate for mutual TLS.")
    nats_tls_key_file: str | None = Field(None, description="Client key for mutual TLS.")
    nats_data_dir: str | None = Field(
        None,
        description="JetStream directory of the embedded server; unset: a temporary one per run.",
    )
    nats_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="Replicas of every stream and KV bucket agentic provisions (3 on a "
        "3-node cluster: the bus survives the loss of any one node). Changed in place on "
        "existing streams.",
    )
    nats_placement_tags: str | None = Field(
        None,
        description="Comma-separated JetStream placement tags for the streams and buckets "
        "agentic provisions (servers declare theirs with `server_tags`); unset: anywhere.",
    )
    events_max_age_s: float = Field(
        7 * 24 * 3600.0,
        description="How long AGENTIC_EVENTS keeps run events (and AGENTIC_DLQ dead letters); "
        "longer than your longest run (docs/nats.md).",
    )
    events_max_bytes: int = Field(
        1_073_741_824,
        ge=0,
        description="Most bytes AGENTIC_EVENTS keeps; past it the oldest events go (0: no "
        "limit). Reserved on each NATS server's JetStream storage (`max_file_store`).",
    )
    steps_max_bytes: int = Field(
        536_870_912,
        ge=0,
        description="Most bytes of queued steps AGENTIC_STEPS holds; past it new steps are "
        "refused and wait, nothing queued is dropped (0: no limit). Reserved like "
        "`AGENTIC_EVENTS_MAX_BYTES`.",
    )
    dlq_max_bytes: int = Field(
        134_217_728,
        ge=0,
        description="Most bytes AGENTIC_DLQ keeps; past it the oldest dead letters go (0: no "
        "limit). Reserved like `AGENTIC_EVENTS_MAX_BYTES`.",
    )
    step_ack_wait_s: float = Field(
        30.0,
        description="JetStream ack wait of step work; workers send in-progress acks within it.",
    )
    step_max_deliver: int = Field(
        5, description="Deliveries of one step message before it goes to the DLQ."
    )
    step_claims: bool = Field(
        True,
        description="Workers claim each delivery they run in the KV bucket AGENTIC_CLAIMS, so "
        "that a step redelivered after a NATS stall never runs on two workers at once (one "
        "KV write per step; docs/nats.md). false: no claims.",
    )
    step_max_ack_pending: int = Field(
        1000, description="Unacked step messages per pool before delivery pauses."
    )
    coordinator_id: str | None = Field(
        None,
        description="This coordinator's identity for leadership; unset: the host name (a "
        "restarted coordinator with the same id takes its lease back at once).",
    )
    coordinator_lease_s: float = Field(
        10.0,
        gt=0,
        description="How long the leader's lease outlives its last renewal (renewed every "
        "third of it): how soon a standby coordinator takes over. Set when the KV bucket "
        "AGENTIC_COORDINATOR is created.",
    )

    # --- console -------------------------------------------------------------------------
    console_token: str | None = Field(
        None,
        description="Token of `agentic console` (at least 16 characters): required to serve "
        "it on any address but loopback, then checked on every request (docs/console.md).",
    )

    # --- Kubernetes ------------------------------------------------------------------------
    k8s_namespace: str = Field("agentic", description="Namespace of step Jobs and worker Jobs.")
    k8s_image: str = Field("agentic-worker:0.1.0", description="Image of step and worker Jobs.")
    k8s_service_account: str = Field(
        "agentic", description="ServiceAccount of step and worker Jobs."
    )
    k8s_secret_name: str | None = Field(
        None,
        description="Secret of the step Jobs' provider keys, one key per variable: a step Job "
        "gets only the variables its providers name (`secretKeyRef`). Worker Jobs take "
        "their pool's `secrets` instead.",
    )
    k8s_store_secret: str | None = Field(
        None,
        description="Secret with the run store's credentials (`AWS_*` for `s3://`), given "
        "whole to step and worker Jobs; never LLM keys.",
    )
    k8s_worker_nats_secret: str | None = Field(
        None,
        description="Secret holding a pool's worker nkey seed (key `seed.nk`), mounted into "
        "its worker Jobs; `{pool}` becomes the pool (`agentic-nats-worker-{pool}`). A pool's "
        "`nats_secret` wins. Unset: no seed (NATS without authentication).",
    )
    k8s_step_trust_configmap: str | None = Field(
        None,
        description="Optional ConfigMap whose key `trusted-keys` worker Jobs read as "
        "`AGENTIC_STEP_TRUSTED_KEYS`; unset or absent: the keys published in the run store.",
    )
    k8s_store_pvc: str | None = Field(
        None, description="PVC holding a file run store, mounted by Jobs."
    )
    k8s_store_mount_path: str = Field(
        "/var/lib/agentic", description="Where Jobs mount the run-store PVC."
    )
    k8s_job_ttl_s: int = Field(3600, description="`ttlSecondsAfterFinished` of Jobs.")
    k8s_pools: dict[str, K8sPool] = Field(
        default_factory=dict,
        description="Per-pool Job settings as JSON: `{pool: {resources, node_selector, "
        "tolerations, secrets, nats_secret}}`; a provider's own scheduling hints win.",
    )
    k8s_reconcile_interval_s: float = Field(
        10.0, description="Period of the reconcile that backs the Job watch."
    )
    k8s_pod_start_grace_s: float = Field(
        30.0,
        description="How long a step pod may wait on an image pull error or a container "
        "config error before its attempt fails.",
    )
    k8s_unschedulable_timeout_s: float = Field(
        300.0, description="How long a step pod may stay unschedulable before its attempt fails."
    )
    scaler_poll_interval_s: float = Field(
        5.0, description="How often `agentic scaler` reads the consumer."
    )
    scaler_max_jobs: int = Field(10, description="Most worker Jobs `agentic scaler` runs per pool.")

    # --- planner -------------------------------------------------------------------------
    planner_agent_provider: str = Field(
        "planner", description="Catalog id of the provider that plans goals."
    )
    planner_max_steps: int = Field(8, description="Most steps one plan may have.")
    kb_index_path: str = Field(
        "",
        description="The knowledge index (SQLite): empty for `<store>/kb/index.sqlite3` on a "
        "local store, else a cache file per store under `$XDG_CACHE_HOME/agentic/kb` (it is "
        "rebuilt from the store when missing).",
    )
    kb_top_k: int = Field(
        5, ge=0, description="Matches from the knowledge base a planner prompt shows (0: none)."
    )
    kb_max_chars: int = Field(
        600, ge=50, description="Characters of each knowledge match in a planner prompt."
    )
    planner_min_success_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A provider whose steps succeeded less often than this is flagged to the "
        "planner (docs/planner.md), once it ran at least `AGENTIC_PLANNER_MIN_STEPS` steps.",
    )
    planner_min_steps: int = Field(
        5, ge=1, description="Steps a provider must have run before its success rate counts."
    )
    assume_vram_gb: float | None = Field(
        None,
        ge=0,
        description="GPU memory of this machine in GB (the original tool's variable): the "
        "planner does not offer agents whose `min_vram_gb` is more, when the steps run here "
        "(`inprocess`, `subprocess`). Unset: the largest GPU `nvidia-smi` reports; without "
        "it, nothing is hidden.",
    )
    available_architectures: Annotated[list[Literal["cpu", "gpu", "tpu"]] | None, NoDecode] = Field(
        None,
        description="The processors of this machine, comma-separated (the original tool's "
        "variable): the planner does not offer agents whose `hardware.architecture` names "
        "none of them, when the steps run here. Unset: `cpu`, plus `gpu` when "
        "`AGENTIC_ASSUME_VRAM_GB` is above 0 or `nvidia-smi` reports a GPU.",
    )
    disable_hardware_filter: bool = Field(
        False,
        description="Offer every agent whatever its `min_vram_gb` and `hardware.architecture` "
        "(the original tool's variable).",
    )

    @field_validator("available_architectures", mode="before")
    @classmethod
    def _architectures(cls, value: Any) -> Any:
        """``cpu,gpu`` (spaces, ``;`` and ``|`` too), as the original tool read it."""
        if isinstance(value, str):
            parts = [p.strip().lower() for p in re.split(r"[\s,;/|]+", value)]
            return [p for p in parts if p] or None
        return value

    @field_validator(
        "extra_agent_providers_catalog_dirs", "extra_mcp_providers_path", mode="before"
    )
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        """``a:b`` (``a;b`` on Windows), as the original tool wrote these folders."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(os.pathsep) if part.strip()]
        return value


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]


def settings_markdown() -> str:
    """The settings table of ``docs/settings.md``."""
    lines = [
        "# Settings",
        "",
        "Generated from `agentic/settings.py` by `python -m agentic.settings > docs/settings.md`.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{default}`"
        lines.append(f"| `AGENTIC_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
