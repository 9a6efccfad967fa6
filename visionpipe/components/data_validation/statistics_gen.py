"""StatisticsGen whose image statistics cover splits of any size.

TFDV's ``ImageStatsGenerator`` (run with ``enable_semantic_domain_stats``) writes the
``image_format_histogram`` that the schema's ``image_domain`` check reads, but only for a
feature with at least 100 values: on a smaller split the statistics lack it, ExampleValidator
logs "there is no image_format_histogram in the statistics" and the check never runs. The
threshold is the generator's ``values_threshold`` argument, which ``StatsOptions`` does not
expose, and custom generators cannot travel in the JSON options a TFX StatisticsGen
receives. So this executor has TFDV build its image generator with ``values_threshold=1``
(the 0.8 image ratio is kept) while TFX's executor sets up the statistics pipeline.
Everything else is TFX's StatisticsGen, unchanged.
"""
from __future__ import annotations

import functools
import types
from unittest import mock

import visionpipe  # noqa: F401
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_data_validation.statistics.generators import image_stats_generator
from tfx.components import StatisticsGen
from tfx.components.statistics_gen import executor as tfx_executor
from tfx.dsl.components.base import executor_spec

MIN_IMAGE_VALUES = 1

# What stats_impl finds under ``image_stats_generator.ImageStatsGenerator`` while ``Do``
# runs: TFDV's own class, called with the lower threshold. (The class itself stays in its
# module: its __init__ looks itself up there by name.)
_IMAGE_STATS_ANY_SPLIT_SIZE = types.SimpleNamespace(ImageStatsGenerator=functools.partial(
    image_stats_generator.ImageStatsGenerator, values_threshold=MIN_IMAGE_VALUES))


class Executor(tfx_executor.Executor):
    """TFX's StatisticsGen executor, with image statistics for any number of images.

    TFDV creates its generators when the statistics transform is built inside ``Do``, and
    Beam workers receive the created instances, so the lower threshold holds on every
    runner."""

    def Do(self, input_dict, output_dict, exec_properties):
        with mock.patch.object(stats_impl, "image_stats_generator", _IMAGE_STATS_ANY_SPLIT_SIZE):
            return super().Do(input_dict, output_dict, exec_properties)


class ImageStatisticsGen(StatisticsGen):
    """``tfx.components.StatisticsGen`` with image statistics on splits of any size."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
