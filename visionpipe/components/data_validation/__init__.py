"""Data validation: image statistics, a curated schema, ExampleValidator, and DataGate,
which fails a run on unaccepted anomalies or label drift and reports class imbalance."""
from visionpipe.components.data_validation.component import (  # noqa: F401
    DataGate, DataValidationReport)
from visionpipe.components.data_validation.executor import DataValidationError  # noqa: F401
from visionpipe.components.data_validation.schema import (  # noqa: F401
    curated_schema, image_stats_options, load_schema, write_schema)
from visionpipe.components.data_validation.wiring import (  # noqa: F401
    ValidationComponents, expected_class_names, previous_accepted_statistics,
    validation_components)
