"""Semantic segmentation: a class id per pixel (``image/segmentation/mask``)."""
from visionpipe.tasks.segmentation.task import SegmentationTask  # noqa: F401
