"""ImageExampleGen: a TFX component (and a plain ``ingest()``) that turns image folders,
CSV manifests, COCO, Pascal VOC, TFDS and TFRecords into VisionPipe Examples.

TFX is imported only by ``component``/``executor``; ``ingest`` needs Beam alone.
"""
from visionpipe.components.image_example_gen.ingest import IngestResult, ingest
from visionpipe.components.image_example_gen.report import (EmptySplitError, IngestError,
                                                            QuarantineLimitExceeded,
                                                            SparseClassError)

__all__ = ["IngestResult", "ingest", "IngestError", "QuarantineLimitExceeded", "EmptySplitError",
           "SparseClassError"]
