"""Where a failed component keeps the report that explains the failure.

TFX deletes a failed execution's output folders (``<root>/<Component>/<key>/<id>``), so the
report named in the error message would be gone by the time a user reads it. It is written
beside that folder instead, in ``<root>/<Component>/<key>_rejected/<id>``.
"""
from __future__ import annotations

import os


def rejected_report_dir(report_uri: str) -> str:
    uri = report_uri.rstrip("/")
    return os.path.join(os.path.dirname(uri) + "_rejected", os.path.basename(uri))
