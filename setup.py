"""VisionPipe package. Install against the lock: pip install -c constraints/py310.txt -e .[dev]"""
from setuptools import find_packages, setup

BASE = [
    "tfx[kfp]==1.16.0",
    "tensorflow==2.16.2",
    "tf-keras==2.16.0",
    "tensorflow-model-optimization==0.8.1",
    "keras-cv==0.9.0",
    "tensorflow-datasets",
    "numpy<2",
    "dill",
    "opencv-python-headless<4.11",
    "pyyaml",
    "Pillow",
    "scikit-image",
    "scikit-learn",
    "pycocotools",
    "tflite-support",
    "croniter",
    "tf2onnx",
    "onnx",
    "onnxruntime",
]
EXTRAS = {
    "serving": ["tensorflow-serving-api==2.16.1", "grpcio", "grpcio-health-checking", "prometheus-client"],
    "tracking": ["motmetrics", "faiss-cpu"],
    "dev": ["pytest", "pytest-timeout", "pytest-xdist", "hypothesis"],
}
EXTRAS["dev"] = EXTRAS["dev"] + EXTRAS["serving"] + EXTRAS["tracking"]

setup(
    name="visionpipe",
    version="0.1.0",
    description="A TFX pipeline for convolutional vision models: ingest, train, optimize, gate, serve.",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["visionpipe", "visionpipe.*"]),
    install_requires=BASE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["visionpipe=visionpipe.cli.main:main"]},
)
