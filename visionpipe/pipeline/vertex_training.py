"""Training on Vertex AI with several workers: TFX's Vertex Trainer extension runs the same
``run_fn`` as a Vertex custom job whose worker pools come from ``train.workers`` (one chief
pool, one pool of the other workers); Vertex sets TF_CONFIG, so ``train.strategy:
multi_worker`` finds the cluster."""
from __future__ import annotations

from typing import Any, Dict


def vertex_custom_config(config, image: str) -> Dict[str, Any]:
    """The Trainer custom_config entries of TFX's Vertex Trainer extension."""
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor

    train = config.train
    spec = {"machine_spec": {"machine_type": train.machine_type},
            "container_spec": {"image_uri": image}}
    pools = [{**spec, "replica_count": 1}]  # the chief
    if train.workers > 1:
        pools.append({**spec, "replica_count": train.workers - 1})
    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: train.vertex_region,
        executor.TRAINING_ARGS_KEY: {"project": train.vertex_project, "worker_pool_specs": pools},
    }
