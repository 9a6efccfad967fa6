"""Multi-label benchmarks (issue 24): does the recipe learn, and does the gate refuse what did not.

1. ``configs/multilabel.yaml`` run three times into one serving root, as a user would: the
   config's epochs, then 1 epoch, then 0 (untrained). Printed per run: micro / macro F1, macro
   AUC, macro mAP, exact match, the trivial predictor's F1, blessed and the pushed version,
   and the training seconds. Targets: macro AUC >= 0.95 and F1 >= 0.85 in <= 300 s of CPU
   training; the untrained run refused.
2. BCCD as multi-label (which cell types appear in an image, from its boxes;
   ``configs/bccd_multilabel.yaml``): macro AUC and AP per cell type beside its chance level.
   Skipped with a reason when ``../shared/datasets/bccd`` is absent.

``python -m benchmarks multilabel [--skip-bccd]``
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

BCCD = os.path.join("..", "shared", "datasets", "bccd", "BCCD")


def _run(config_path, overrides, tmp):
    from visionpipe.core.config import load_config
    from visionpipe.pipeline import runners, summary

    config = load_config(config_path, [f"runner.output_dir={tmp}/runs",
                                       f"push.serving_root={tmp}/serving", *overrides])
    start = time.time()
    paths = runners.run_pipeline(config, progress=False)
    return summary.build_summary(paths, config), time.time() - start


def _row(label, result, seconds):
    ev = result["evaluation"]
    m, trivial = ev["metrics"], ev.get("trivial") or {}
    push = result.get("push") or {}
    version = push.get("version") if push.get("pushed") else "-"
    train_s = (result.get("training") or {}).get("seconds", float("nan"))

    def f(key, source=m):
        value = source.get(key)
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    return (f"| {label} | {f('f1')} | {f('macro_f1')} | {f('macro_auc')} | {f('macro_map')} | "
            f"{f('exact_match')} | {f('f1', trivial)} | {'yes' if ev['blessed'] else 'no'} | "
            f"{version} | {train_s:.0f} | {seconds:.0f} |")


def shapes_table(tmp) -> bool:
    from visionpipe.core.config import load_config

    epochs = load_config("configs/multilabel.yaml").train.epochs
    print("| run | F1 (micro) | macro F1 | macro AUC | macro mAP | exact match | trivial F1 | "
          "blessed | version | train s | run s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for label, n in ((f"{epochs} epochs (the config)", epochs), ("1 epoch", 1),
                     ("0 epochs (untrained)", 0)):
        result, seconds = _run("configs/multilabel.yaml", [f"train.epochs={n}"], tmp)
        print(_row(label, result, seconds), flush=True)
        m = result["evaluation"]["metrics"]
        if n == epochs:
            met = (m.get("macro_auc", 0) >= 0.95 and m.get("f1", 0) >= 0.85
                   and result["training"]["seconds"] <= 300)
            ok &= met
            print(f"target macro AUC >= 0.95, F1 >= 0.85, <= 300 s training: "
                  f"{'met' if met else 'MISSED'}")
        if n == 0:
            ok &= not result["evaluation"]["blessed"]
            for failure in result["evaluation"].get("failures", []):
                print(f"  untrained refused: {failure}")
    return ok


def bccd(tmp) -> None:
    if not os.path.isdir(BCCD):
        print(f"BCCD multi-label skipped: {BCCD} is absent")
        return
    result, seconds = _run("configs/bccd_multilabel.yaml", [], tmp)
    ev = result["evaluation"]
    m = ev["metrics"]
    print(f"BCCD multi-label ({result['training']['num_train']} train images, "
          f"{result['training']['seconds']:.0f} s training, {seconds:.0f} s run): "
          f"macro AUC {m.get('macro_auc', float('nan')):.3f}, macro mAP "
          f"{m.get('macro_map', float('nan')):.3f}, F1 {m['f1']:.3f} (trivial "
          f"{(ev.get('trivial') or {}).get('f1', float('nan')):.3f}), "
          f"{'blessed' if ev['blessed'] else 'not blessed'}")
    print("| cell type | AP | chance (positive rate) | AUC |")
    print("|---|---|---|---|")
    for key in sorted(k for k in m if k.startswith("ap/")):
        name = key[3:]
        auc = m.get(f"auc/{name}")
        print(f"| {name} | {m[key]:.3f} | {m.get('positive_rate/' + name, float('nan')):.2f} | "
              f"{'-' if auc is None else f'{auc:.3f}'} |")


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="multilabel_bench")
    parser.add_argument("--skip-bccd", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ok = shapes_table(tmp)
        if not args.skip_bccd:
            bccd(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
