"""Classification benchmarks (issue 3):
1. `visionpipe demo`'s pipeline end to end on this machine, with each component's share;
2. input pipeline vs model: training steps/s with the real tf.data input divided by steps/s on
   the same batches cached in memory (target >= 0.9);
3. held-out accuracy on scikit-learn's digits (target >= 95%) and on the shapes data.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _pipeline(config_path, overrides, tmp):
    from visionpipe.pipeline import runners, summary
    from visionpipe.core.config import load_config

    config = load_config(config_path, [f"runner.output_dir={tmp}/runs",
                                       f"push.serving_root={tmp}/serving", *overrides])
    start = time.time()
    paths = runners.run_pipeline(config, progress=False)
    total = time.time() - start
    result = summary.build_summary(paths, config)
    return config, paths, total, result


def input_pipeline_ratio(examples_uri: str, config, steps: int = 30) -> float:
    import tensorflow as tf

    from visionpipe.core.examples import read_class_names
    from visionpipe.models import data
    from visionpipe.core.examples import split_files
    from visionpipe.tasks import get_task

    task = get_task(config, read_class_names(examples_uri))
    files = split_files(examples_uri, "train")
    batch = config.train.batch_size
    real = data.make_dataset(files, task, batch, training=True, seed=1)
    cached = tf.data.Dataset.from_tensor_slices(
        tuple(tf.stack(t) for t in zip(*list(real.unbatch().take(batch * 8))))
    ).batch(batch).cache().repeat()
    model = task.build_model()
    task.compile_model(model, 1e-3)

    def steps_per_second(dataset, warmup_steps):
        model.fit(dataset, steps_per_epoch=warmup_steps, epochs=1, verbose=0)
        start = time.time()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        return steps / (time.time() - start)

    in_memory = steps_per_second(cached, 5)
    # One full pass first: the pipeline decodes every image once into its cache, then every
    # later epoch only shuffles and augments; a training run spends all but one epoch there.
    epoch_steps = int(np.ceil(data.count_examples(files) / batch))
    first_pass_start = time.time()
    model.fit(real, steps_per_epoch=epoch_steps, epochs=1, verbose=0)
    first_pass = epoch_steps / (time.time() - first_pass_start)
    with_input = steps_per_second(real, 1)
    ratio = with_input / in_memory
    print(f"input pipeline: {with_input:.2f} steps/s with tf.data input (after the first pass, "
          f"which decodes: {first_pass:.2f} steps/s), {in_memory:.2f} steps/s on cached batches "
          f"-> ratio {ratio:.2f} (target >= 0.9)")
    return ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="classification_bench")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args(argv or [])
    from visionpipe.pipeline import runners, summary

    with tempfile.TemporaryDirectory() as tmp:
        config, paths, total, result = _pipeline("configs/digits.yaml", ["name=digits_bench"], tmp)
        accuracy = result.get("evaluation", {}).get("metrics", {}).get("accuracy", float("nan"))
        print(f"digits (1,797 real images, 32px, small_cnn): held-out accuracy {accuracy:.4f} "
              f"(target >= 0.95); pipeline {total:.1f}s")
        input_pipeline_ratio(result["data"]["examples_uri"], config)
        # The demo's input pipeline also decodes and augments (flips, rotation) every batch.
        from visionpipe.components.image_example_gen import ingest
        from visionpipe.core.config import load_config
        from visionpipe.pipeline.data_source import resolve_data_source

        shapes = load_config("configs/classification.yaml", [f"runner.output_dir={tmp}/shapes"])
        ingested = ingest(resolve_data_source(shapes, f"{tmp}/shapes"), f"{tmp}/shapes_ingest")
        print("shapes demo config (48px, flips + rotation):", end=" ")
        input_pipeline_ratio(ingested.examples_uri, shapes)
        if not args.skip_demo:
            demo = load_config("configs/classification.yaml", [f"runner.output_dir={tmp}/demo",
                                                               f"push.serving_root={tmp}/serving"])
            start = time.time()
            demo_paths = runners.run_pipeline(demo, progress=True)
            total = time.time() - start
            demo_result = summary.build_summary(demo_paths, demo)
            shapes_accuracy = demo_result.get("evaluation", {}).get("metrics", {}).get(
                "accuracy", float("nan"))
            print(f"\nshapes demo pipeline: {total:.1f}s end to end (target < 600s); held-out "
                  f"accuracy {shapes_accuracy:.4f}; pushed={demo_result.get('push', {}).get('pushed')}")
            for name, seconds in sorted(demo_paths.durations.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<34} {seconds:7.1f}s  {100 * seconds / total:5.1f}%")
    return 0
