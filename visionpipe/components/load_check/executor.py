"""LoadCheck executor: the model must load in a fresh process and answer its warm-up requests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

BLESSED_KEY = "blessed"
REASON_KEY = "reason"
SKIPPED_KEY = "skipped"
REPORT_FILE = "load_check.json"


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        model_blessing = input_dict.get("model_blessing")
        if model_blessing and not model_utils.is_model_blessed(model_blessing[0]):
            return _mark(blessing, False, "the evaluator did not bless the model", skipped=True)
        export_dir = path_utils.serving_model_path(model.uri)
        result = run_probe(export_dir, int(exec_properties.get("timeout_seconds") or 300),
                           exec_properties.get("allowed_ops") or "")
        _mark(blessing, result["ok"], result["error"] or
              f"loaded in a fresh process and answered {result['requests']} warm-up requests")


def run_probe(export_dir: str, timeout_seconds: int, allowed_ops: str = "") -> Dict[str, Any]:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    try:
        proc = subprocess.run([sys.executable, "-m", "visionpipe.components.load_check.probe",
                               export_dir, allowed_ops], capture_output=True, text=True,
                              timeout=timeout_seconds, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "requests": 0, "error": f"timed out after {timeout_seconds}s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    return {"ok": False, "requests": 0, "error": f"probe exited {proc.returncode}: {' | '.join(tail)}"}


def _mark(blessing: types.Artifact, ok: bool, reason: str, skipped: bool = False) -> None:
    """Record the verdict; a skipped check (nothing to load-check) is not blessed either."""
    blessing.set_int_custom_property(BLESSED_KEY, int(ok))
    blessing.set_int_custom_property(SKIPPED_KEY, int(skipped))
    blessing.set_string_custom_property(REASON_KEY, reason[:1000])
    io_utils.write_string_file(os.path.join(blessing.uri, REPORT_FILE),
                               json.dumps({"blessed": ok, "skipped": skipped, "reason": reason}))
    io_utils.write_string_file(
        os.path.join(blessing.uri, "INFRA_BLESSED" if ok else "INFRA_NOT_BLESSED"), "")
