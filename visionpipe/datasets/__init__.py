"""Data the project makes or ships itself: generated shapes and scikit-learn's digits."""
from visionpipe.datasets.generated import (  # noqa: F401
    GENERATED_SOURCES, check_generator_limits, generated_class_names, materialise)
