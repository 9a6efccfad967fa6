"""Multi-label image classification."""
from visionpipe.tasks.multilabel.task import MultiLabelTask  # noqa: F401 (registers)
