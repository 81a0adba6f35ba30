"""Turn a stage's `recipe.cluster.<stage>` into KFP task settings and kfp.kubernetes platform config."""
from kfp import kubernetes
from kfp.dsl import PipelineTask

from posttrain.recipe import Resources


def apply(task: PipelineTask, res: Resources) -> PipelineTask:
    if res.nodes > 1:  # the TrainJob's pods get GPUs, node pool and shm (posttrain.training.trainjob); this pod waits
        res = res.model_copy(update={"cpu": None, "memory": None, "gpus": 0, "node_selector": {},
                                     "tolerations": (), "shm": None})
    if res.cpu:
        task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu)
    if res.memory:
        task.set_memory_request(res.memory).set_memory_limit(res.memory)
    if res.gpus:
        task.set_accelerator_type(res.accelerator).set_accelerator_limit(res.gpus)
    for key, value in sorted(res.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in res.tolerations:
        kubernetes.add_toleration(task, key=toleration.key, operator=toleration.operator,
                                  value=toleration.value, effect=toleration.effect)
    if res.shm:
        kubernetes.empty_dir_mount(task, volume_name="shm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=res.shm)
    for secret in res.secrets:
        kubernetes.use_secret_as_env(task, secret_name=secret.secret, secret_key_to_env=dict(secret.env))
    if res.retries:
        task.set_retry(num_retries=res.retries, backoff_duration="60s", backoff_factor=2)
    if res.timeout_s:
        kubernetes.set_timeout(task, res.timeout_s)
    return task
