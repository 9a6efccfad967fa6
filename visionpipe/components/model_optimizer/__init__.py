"""ModelOptimizer: pruning, distillation, QAT and TFLite PTQ of the trained model, each gated."""
