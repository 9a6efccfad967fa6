"""ImageExampleGen: images with labels, boxes and masks -> one Examples artifact."""
from __future__ import annotations

import json
from typing import Any, Dict, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from visionpipe.components.image_example_gen import driver, executor
from visionpipe.components.image_example_gen.spec import (CONFIG_KEY, EXAMPLES_KEY,
                                                          QUARANTINE_REPORT_KEY, ImageExampleGenSpec,
                                                          QuarantineReport)
from visionpipe.core.config import PipelineConfig


class ImageExampleGen(base_beam_component.BaseBeamComponent):
    """Reads ``config.data`` (folder, CSV, COCO, VOC, TFDS or TFRecord) with Apache Beam.

    Outputs ``examples`` (gzip TFRecords of tf.Example per split, plus class_names.json)
    and ``quarantine_report`` (quarantine.json). The run fails when more than
    ``data.max_bad_fraction`` of the inputs were quarantined. Its driver fingerprints the
    source files, so TFX's cache re-runs it when the images change.
    """

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.Driver

    def __init__(self, config: Union[PipelineConfig, Dict[str, Any]]):
        if isinstance(config, PipelineConfig):
            config = config.validate().to_dict()
        super().__init__(spec=ImageExampleGenSpec(**{
            CONFIG_KEY: json.dumps(config, sort_keys=True),
            EXAMPLES_KEY: types.Channel(type=standard_artifacts.Examples),
            QUARANTINE_REPORT_KEY: types.Channel(type=QuarantineReport),
        }))
