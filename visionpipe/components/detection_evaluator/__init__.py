"""DetectionEvaluator: COCO mAP (pycocotools) gate for detectors, blessing like TFX's Evaluator."""
