"""ImageExampleGen's driver: adds the input fingerprint to the exec properties before
TFX computes the cache key, so changed images re-run the ingest (ExampleGen does the same
with its span fingerprint)."""
import json

from tfx.dsl.components.base import base_driver
from tfx.orchestration import data_types_utils, metadata
from tfx.orchestration.portable import base_driver as portable_base_driver
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2

from visionpipe.components.image_example_gen.fingerprint import input_fingerprint
from visionpipe.components.image_example_gen import spans
from visionpipe.components.image_example_gen.spec import CONFIG_KEY, INPUT_FINGERPRINT_KEY, SPANS_KEY
from visionpipe.core.config import config_from_dict


class Driver(base_driver.BaseDriver, portable_base_driver.BaseDriver):

    def __init__(self, metadata_handle: metadata.Metadata):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        portable_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        config = config_from_dict(json.loads(execution_info.exec_properties[CONFIG_KEY]))
        output = driver_output_pb2.DriverOutput()
        # spans are chosen when the component runs, so a scheduled run sees the new ones
        data, choice = spans.resolve(config.data)
        data_types_utils.set_metadata_value(output.exec_properties[SPANS_KEY],
                                            choice.to_json() if choice else "")
        data_types_utils.set_metadata_value(output.exec_properties[INPUT_FINGERPRINT_KEY],
                                            input_fingerprint(data))
        return output
