"""Run in a fresh process by LoadCheck: load a SavedModel and replay its warm-up requests.

Prints one JSON line {"ok": bool, "requests": n, "error": str}; exit status 0 when ok.
"""
import json
import sys


def probe(export_dir: str, allowed_ops: str = "") -> dict:
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.models import export
    from visionpipe.serving import model_scan

    findings = model_scan.scan_saved_model(export_dir, model_scan.parse_allowed_ops(allowed_ops))
    if findings:  # refused before TensorFlow loads (and so runs) anything of the model
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        return {"ok": False, "requests": 0,
                "error": f"refused by the model scan: {findings[0]}{more} (push.allowed_ops)"}

    requests = export.read_warmup_requests(export_dir)
    if not requests:
        return {"ok": False, "requests": 0,
                "error": f"no warm-up requests in {export_dir}/{export.WARMUP_FILE}"}
    model = tf.saved_model.load(export_dir)
    for i, request in enumerate(requests):
        signature_name = request.model_spec.signature_name or "serving_default"
        if signature_name not in model.signatures:
            return {"ok": False, "requests": i, "error": f"signature {signature_name!r} not found"}
        fn = model.signatures[signature_name]
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        batch = len(next(iter(inputs.values())))
        for name, value in outputs.items():
            if value.shape.rank and value.shape[0] != batch:
                return {"ok": False, "requests": i,
                        "error": f"output {name!r} has batch {value.shape[0]}, expected {batch}"}
            if value.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(value))):
                return {"ok": False, "requests": i, "error": f"output {name!r} is not finite"}
    return {"ok": True, "requests": len(requests), "error": ""}


def main(argv) -> int:
    try:
        result = probe(argv[1], argv[2] if len(argv) > 2 else "")
    except Exception as err:  # noqa: BLE001 - every failure is reported as a failed check
        result = {"ok": False, "requests": 0, "error": f"{type(err).__name__}: {err}"[:2000]}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
