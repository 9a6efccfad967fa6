# The pipeline image that Kubeflow Pipelines / Vertex AI run (`visionpipe compile --image ...`).
# Built on the official TFX image so TFX's own executors and launchers match the local runs.
FROM tensorflow/tfx:1.16.0

# tfmot and TFX need Keras 2; it must be set before TensorFlow is imported anywhere.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /visionpipe
COPY constraints/ constraints/
COPY setup.py README.md ./
COPY visionpipe/ visionpipe/
COPY configs/ configs/

# The lock file pins every dependency to the versions the project is tested with.
RUN python -m pip install -c constraints/py310.txt ".[serving]" \
 && python -c "import visionpipe, tfx, keras_cv, tensorflow_model_optimization; print('ok')"

# Kubeflow's launcher supplies the entrypoint (python -m tfx.orchestration...); keep TFX's.
