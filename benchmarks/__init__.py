"""VisionPipe benchmarks: `make bench` (python -m benchmarks [name ...]). Each prints ratios
measured in one run; none is a timed test."""
