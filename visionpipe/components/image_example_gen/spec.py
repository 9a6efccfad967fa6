"""ImageExampleGen's component spec: key names, the QuarantineReport artifact type."""
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

# Keys of the component's outputs and exec properties.
EXAMPLES_KEY = "examples"
QUARANTINE_REPORT_KEY = "quarantine_report"
CONFIG_KEY = "config_json"  # json.dumps(PipelineConfig.to_dict())
INPUT_FINGERPRINT_KEY = "input_fingerprint"  # set by the driver (file paths, sizes, mtimes)
SPANS_KEY = "spans"  # set by the driver: the spans of a {SPAN} data.path (JSON), else ""

# Custom properties recorded on the artifacts.
QUARANTINED_COUNT_PROPERTY = "quarantined_count"
DUPLICATE_COUNT_PROPERTY = "duplicate_count"
TOTAL_INPUTS_PROPERTY = "total_inputs"
INPUT_FINGERPRINT_PROPERTY = "input_fingerprint"
SPLIT_COUNT_PROPERTY = "num_examples_{split}"
SPLIT_OBJECTS_PROPERTY = "num_objects_{split}"


class QuarantineReport(Artifact):
    """A folder with quarantine.json: every input that was not turned into an Example."""
    TYPE_NAME = "visionpipe.QuarantineReport"


class ImageExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        CONFIG_KEY: ExecutionParameter(type=str),
        INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
        SPANS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        QUARANTINE_REPORT_KEY: ChannelParameter(type=QuarantineReport),
    }
