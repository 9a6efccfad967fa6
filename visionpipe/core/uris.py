"""Paths a cluster can read (``gs://...``, any ``scheme://``) versus this machine's paths."""


def is_uri(path: str) -> bool:
    return "://" in str(path)
