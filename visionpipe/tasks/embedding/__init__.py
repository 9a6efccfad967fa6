from visionpipe.tasks.embedding.task import EmbeddingTask  # noqa: F401
