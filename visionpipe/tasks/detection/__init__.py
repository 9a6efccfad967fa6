"""Object detection: RetinaNet and YOLOv8 (keras-cv) with NMS inside the export."""
from visionpipe.tasks.detection.task import DetectionTask  # noqa: F401 (registers)
