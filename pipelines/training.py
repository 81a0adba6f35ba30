"""What the training stages (sft, dpo, rlvr) get beyond their resources: the checkpoint volume, and what a
multi-node launcher needs to submit a Kubeflow Trainer TrainJob (its image, its namespace)."""
from kfp import kubernetes
from kfp.dsl import PipelineTask

from posttrain.training.checkpoints import ENV
from posttrain.components.images import IMAGES
from posttrain.recipe import Recipe
from posttrain.stage_table import DISTRIBUTED
from posttrain.training.trainjob import IMAGE_ENV, NAMESPACE_ENV

STAGES = DISTRIBUTED  # the stages that train, and checkpoint (training.py, ppo.py)


def apply(task: PipelineTask, stage: str, recipe: Recipe) -> PipelineTask:
    cluster = recipe.cluster
    if cluster.checkpoint_volume:
        # Checkpoints on a volume that outlives the pod: a retry of this task resumes (posttrain.training.checkpoints).
        kubernetes.mount_pvc(task, pvc_name=cluster.checkpoint_volume, mount_path=cluster.checkpoint_mount)
        task.set_env_variable(ENV, cluster.checkpoint_mount)
    if getattr(cluster, stage).nodes > 1:
        task.set_env_variable(IMAGE_ENV, IMAGES[stage])  # the TrainJob's pods run the stage's own image
        kubernetes.use_field_path_as_env(task, env_name=NAMESPACE_ENV, field_path="metadata.namespace")
    return task
