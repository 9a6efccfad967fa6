"""Data the project makes or ships itself: generated shapes and scikit-learn's digits."""
from visionpipe.datasets.generated import (  # noqa: F401
    GENERATED_SOURCES, generated_class_names, ingest_source, prepare_generated_source)
