"""Single-label image classification."""
from visionpipe.tasks.classification.task import ClassificationTask  # noqa: F401 (registers)
