"""Model optimization: pruning, distillation, quantization-aware training and post-training
quantization to TFLite, each measured with the TFLite interpreter and gated on accuracy."""
