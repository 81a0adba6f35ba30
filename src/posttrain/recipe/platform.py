"""The recipe's sections for where a run happens: each stage's pod on a cluster, the sandbox for model-written
code, experiment tracking."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, model_validator

from posttrain.recipe.sections import Section
from posttrain.stage_table import DISTRIBUTED
from posttrain.stage_table import NAMES as STAGES
from posttrain.stage_table import STAGES as TABLE

class Toleration(Section):
    key: str = Field(min_length=1)  # node taint key the pod tolerates
    operator: Literal["Equal", "Exists"] = "Equal"  # Equal: key and value match; Exists: any value
    value: str | None = None  # taint value (operator Equal)
    # taint effect tolerated; null: every effect
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class SecretEnv(Section):
    """Environment variables from a Kubernetes Secret; only the names reach the pipeline spec."""

    secret: str = Field(min_length=1)  # Secret name in the run's namespace
    env: dict[str, str] = Field(min_length=1)  # key in the Secret -> environment variable


class Resources(Section):
    """What one stage's pod asks the cluster for; ignored by local runs."""

    cpu: str | None = None  # Kubernetes quantity, e.g. "16"
    memory: str | None = None  # e.g. "256Gi"
    gpus: Literal[0, 1, 2, 4, 8, 16] = 0  # the counts KFP accepts
    accelerator: str = "nvidia.com/gpu"  # extended resource name of the GPUs (KFP accelerator type)
    node_selector: dict[str, str] = Field(default_factory=dict)  # node labels the pod must run on
    tolerations: tuple[Toleration, ...] = ()  # node taints the pod tolerates
    shm: str | None = None  # size of a memory-backed /dev/shm (NCCL, vLLM), e.g. "64Gi"
    secrets: tuple[SecretEnv, ...] = ()  # Kubernetes Secrets exposed as environment variables
    retries: int = Field(0, ge=0)  # KFP retries of a failed task, backoff 60 s doubling
    timeout_s: int = Field(0, ge=0)  # 0: no timeout; an unschedulable pod otherwise waits forever
    # Nodes the stage trains on. Above 1 the stage's pod submits a Kubeflow Trainer TrainJob (torch-distributed
    # runtime) of `nodes` pods with `gpus` processes each, and waits for it (posttrain.training.trainjob).
    nodes: int = Field(1, ge=1)
    # What posttrain.plan sets the stage against (the node pool's accelerator; ignored when gpus is 0):
    gpu_memory_gib: float = Field(80.0, gt=0)  # memory of one accelerator, GiB (H100 80GB: 79.6 usable)
    gpu_tflops: float = Field(989.0, gt=0)  # dense bf16 peak of one accelerator, TFLOP/s (H100 SXM: 989)
    gpu_hour_usd: float = Field(2.0, ge=0)  # price of one accelerator for an hour; a placeholder: set your own


# One `Resources` per stage of posttrain.stage_table, under the stage's name: a stage added there is a key here.
_PerStage = create_model("_PerStage", __base__=Section, **{stage: (Resources, Resources()) for stage in STAGES})


class Cluster(_PerStage):
    """What each stage's pod asks for (`cluster.<stage>`, fields from the stage table), and cluster-wide settings."""

    # PersistentVolumeClaim mounted at `checkpoint_mount` on the training stages (sft, dpo, rlvr): their
    # checkpoints live there, keyed by recipe and inputs, so a retried, rerun or rescheduled pod resumes.
    # null: checkpoints stay inside the stage's output, which a pod loses when it dies.
    checkpoint_volume: str | None = "posttrain-checkpoints"
    checkpoint_mount: str = "/mnt/checkpoints"  # absolute path in the training pods
    # Checkpoint keys of a stage that nothing has written to for this long are deleted when the stage seals.
    checkpoint_retention_days: float = Field(7.0, gt=0)
    # fsspec URL (s3://bucket/checkpoints, gs://...) each complete checkpoint is copied to, and fetched from
    # when the pod has none: for clusters without a shared volume, and for local runs too. null: none.
    checkpoint_url: str | None = None
    # What posttrain.plan assumes:
    mfu: float = Field(0.4, gt=0, le=1)  # model FLOPs utilisation behind time and cost (Tülu-scale runs: 0.3-0.5)
    # share of each GPU kept free (allocator fragmentation, CUDA context, NCCL buffers)
    memory_headroom: float = Field(0.1, ge=0, lt=1)
    checkpoint_write_gbps: float = Field(1.0, gt=0)  # GB/s one node writes (and hashes) a checkpoint at
    grace_period_s: float = Field(30.0, gt=0)  # the pods' termination grace period, s (Kubernetes' default: 30)

    @model_validator(mode="after")
    def _multi_node(self) -> "Cluster":
        for stage in STAGES:
            if getattr(self, stage).gpus and not TABLE[stage].accelerator:
                raise ValueError(f"{stage}.gpus: the {stage} stage runs in a CPU image (images/cpu), without CUDA")
        for stage in set(STAGES) - set(DISTRIBUTED):
            if getattr(self, stage).nodes > 1:
                raise ValueError(f"{stage}.nodes: only {', '.join(DISTRIBUTED)} train on several nodes")
        for stage in DISTRIBUTED:
            res = getattr(self, stage)
            if res.nodes > 1 and not res.gpus:
                raise ValueError(f"{stage}.nodes: {res.nodes} nodes need gpus (processes per node) >= 1")
            if res.nodes > 1 and not self.checkpoint_volume:
                raise ValueError(f"{stage}.nodes: several nodes share inputs, outputs and checkpoints through "
                                 "checkpoint_volume, which is not set")
        if not self.checkpoint_mount.startswith("/"):
            raise ValueError(f"checkpoint_mount: must be an absolute path, got {self.checkpoint_mount!r}")
        return self


class SandboxSection(Section):
    """Where model-written code runs (the code verifier in rlvr, preference and data, HumanEval in eval).

    Locally every program runs in bubblewrap: no network (a fresh namespace with only a down loopback), a
    filesystem of its own working directory plus the interpreter, read-only; where bubblewrap is missing,
    under Landlock and a seccomp filter (Linux 6.7 or later: no sockets, files as above on the host's disk).
    On a cluster `url` names the code-execution service (manifests/base/sandbox.yaml). Without any of these,
    the verifier refuses to run.
    """

    url: str | None = None  # code-execution service, e.g. http://posttrain-sandbox.posttrain:8080; None: this machine
    # Run programs locally with only rlimits and a timeout (this user's network and files!) when neither
    # bubblewrap nor Landlock can box them; the run's reports then say "none (opted out)". For a trusted laptop,
    # never a cluster.
    allow_unisolated: bool = False
    timeout_s: float = Field(10.0, gt=0)  # wall clock per program; the whole process tree is killed after it
    memory_mb: int = Field(1024, gt=0)  # address space per process
    max_processes: int = Field(32, gt=0)  # processes and threads per program (a fork bomb stops here)
    max_file_mb: int = Field(16, gt=0)  # largest file a program may write; bwrap's tmpfs holds 4x this
    concurrency: int = Field(4, gt=0)  # programs in flight (local processes, or requests to the service)
    retries: int = Field(3, ge=0)  # service: retries on connection errors and 5xx, backoff doubling from 0.5 s


class TrackingSection(Section):
    """Where stage runs, per-step metrics, scores and reports are tracked (see posttrain.reporting.tracking)."""

    backend: Literal["mlflow", "none"] = "mlflow"  # none: nothing is tracked
    # MLflow tracking URI, e.g. http://mlflow.mlflow.svc:5000. None: MLFLOW_TRACKING_URI from the environment;
    # local runs set it to an SQLite store inside the run directory (DIR/mlflow.db).
    uri: str | None = None
    experiment: str | None = None  # MLflow experiment; None: the recipe's name
