"""ModelOptimizer's component spec: key names and the OptimizedModels artifact type."""
import json
from typing import List

from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
OPTIMIZED_KEY = "optimized"
CONFIG_KEY = "config_json"  # json.dumps(PipelineConfig.to_dict())

# Custom properties of the OptimizedModels artifact.
BLESSED_FILES_PROPERTY = "blessed_files"  # JSON list of file names that passed their gates
REPORT_FILE = "report.json"
REPORT_MARKDOWN_FILE = "report.md"


class OptimizedModels(Artifact):
    """A folder of model_<name>.tflite files with report.json and report.md; the custom
    property ``blessed_files`` lists the files that passed their accuracy gates."""
    TYPE_NAME = "visionpipe.OptimizedModels"


class ModelOptimizerSpec(ComponentSpec):
    PARAMETERS = {CONFIG_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {OPTIMIZED_KEY: ChannelParameter(type=OptimizedModels)}


def blessed_files(optimized: Artifact) -> List[str]:
    """File names inside ``optimized.uri`` that passed their gates (what the Pusher ships)."""
    if not optimized.has_custom_property(BLESSED_FILES_PROPERTY):
        raise ValueError(f"{optimized.uri}: OptimizedModels artifact without {BLESSED_FILES_PROPERTY!r}")
    return json.loads(optimized.get_string_custom_property(BLESSED_FILES_PROPERTY))
