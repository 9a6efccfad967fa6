"""Atomic, versioned push into TF Serving's layout: ``<serving_root>/<model>/<version>/``.

The version folder is assembled under ``<serving_root>/<model>/.tmp-<version>-<pid>`` (TF
Serving ignores non-numeric names) and renamed into place, so a server polling the base path
never sees a half-written version; an existing version is never overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.components.util import model_utils
from tfx.types import artifact_utils

PUSHED_KEY = "pushed"
REASON_KEY = "not_pushed_reason"
OPTIMIZED_KEY = "optimized"
PUSH_FILES_KEY = "push_files"
BLESSED_FILES_PROPERTY = "blessed_files"
PUSH_REPORT = "push_report.json"
IDENTICAL_VERSION_KEY = "identical_to_version"


class Executor(tfx_pusher_executor.Executor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        reason = not_blessed_reason(input_dict)
        if reason:
            pushed.set_int_custom_property(PUSHED_KEY, 0)
            pushed.set_string_custom_property(REASON_KEY, reason)
            return
        extra = extra_files(input_dict.get(OPTIMIZED_KEY))
        extra.update(stage_files(input_dict.get(PUSH_FILES_KEY), self.GetModelPath(input_dict),
                                 extra))
        base = os.path.join(exec_properties["serving_root"], exec_properties["model_name"])
        same = identical_latest_version(self.GetModelPath(input_dict), base, extra)
        if same is not None:
            # a re-run with nothing new: a new version would make every server hot-swap for nothing
            pushed.set_int_custom_property(PUSHED_KEY, 0)
            pushed.set_int_custom_property(IDENTICAL_VERSION_KEY, same)
            pushed.set_string_custom_property("pushed_destination", os.path.join(base, str(same)))
            pushed.set_string_custom_property(REASON_KEY, f"identical to version {same}, the "
                                                          "latest pushed (nothing changed)")
            return
        version, path = push_atomically(self.GetModelPath(input_dict), base, extra)
        self._MarkPushed(pushed, pushed_destination=path, pushed_version=str(version))
        with open(os.path.join(pushed.uri, PUSH_REPORT), "w") as f:
            json.dump({"version": version, "path": path, "extra_files": sorted(extra)}, f)


def not_blessed_reason(input_dict) -> str:
    blessing = input_dict.get("model_blessing")
    if blessing and not model_utils.is_model_blessed(blessing[0]):
        return "the evaluator did not bless the model (see the evaluation's failed thresholds)"
    infra = input_dict.get("infra_blessing")
    if infra and not model_utils.is_infra_validated(infra[0]):
        why = infra[0].get_string_custom_property("reason")
        return f"the load check failed: {why}"
    return ""


def extra_files(optimized: Optional[List[types.Artifact]]) -> Dict[str, str]:
    """{file name: source path} of the TFLite files that passed their gates, plus the report."""
    if not optimized:
        return {}
    artifact = optimized[0]
    names = json.loads(artifact.get_string_custom_property(BLESSED_FILES_PROPERTY) or "[]")
    for report in ("report.json", "report.md"):
        if os.path.exists(os.path.join(artifact.uri, report)):
            names.append(report)
    return {name: os.path.join(artifact.uri, name) for name in names}


def stage_files(push_files: Optional[List[types.Artifact]], model_path: str,
                taken: Dict[str, str]) -> Dict[str, str]:
    """{relative path: source} of every file in a stage's PushFiles folder; a path that would
    overwrite a file of the SavedModel or another pushed file is an error naming it."""
    if not push_files:
        return {}
    files = _files_under(push_files[0].uri)
    for relative, source in files.items():
        if relative in taken or os.path.exists(os.path.join(model_path, relative)):
            raise ValueError(f"{source}: a stage's file would overwrite {relative!r} of the "
                             f"pushed version")
    return files


def _tree_digest(files: Dict[str, str]) -> str:
    """sha256 over the sorted (relative path, content) pairs of {relative path: file}."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.replace(os.sep, "/").encode() + b"\0")
        with open(files[relative], "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _files_under(root: str) -> Dict[str, str]:
    """{path relative to root: path} of every file below root."""
    return {os.path.relpath(os.path.join(folder, name), root): os.path.join(folder, name)
            for folder, _, names in os.walk(root) for name in names}


def identical_latest_version(model_path: str, base: str, extra: Dict[str, str]) -> Optional[int]:
    """The latest pushed version if its folder holds exactly the files this push would write."""
    latest = next_version(base) - 1
    if latest < 1 or not os.path.isdir(os.path.join(base, str(latest))):
        return None
    candidate = {**_files_under(model_path), **extra}
    served = _files_under(os.path.join(base, str(latest)))
    if set(candidate) != set(served):
        return None
    return latest if _tree_digest(candidate) == _tree_digest(served) else None


def next_version(base: str) -> int:
    versions = [int(n) for n in os.listdir(base) if n.isdigit()] if os.path.isdir(base) else []
    return max(versions, default=0) + 1


def push_atomically(model_path: str, base: str, extra: Dict[str, str]) -> tuple:
    """Copy the SavedModel (+ extra files) to a temp folder, then rename it to the next version."""
    os.makedirs(base, exist_ok=True)
    version = next_version(base)
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_path, tmp)
    for name, source in extra.items():
        os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
        shutil.copy2(source, os.path.join(tmp, name))
    while True:
        target = os.path.join(base, str(version))
        try:
            os.rename(tmp, target)  # atomic; fails if target exists and is non-empty
            return version, target
        except OSError:
            if not os.path.exists(target):
                raise
            version += 1
