import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.models.conftest import digits_config
from tests.serving.helpers import free_port
from visionpipe.models import backbones, data, training
from visionpipe.core.examples import split_files
from visionpipe.tasks import get_task


def _splits(examples_uri):
    return split_files(examples_uri, "train"), split_files(examples_uri, "eval")


def test_replicas_stay_in_sync_under_mirrored_strategy_on_two_cpus(digits_examples, tmp_path):
    """Two logical CPU devices must be configured before TensorFlow starts: run in a child."""
    config, examples_uri, names = digits_examples
    script = textwrap.dedent(f"""
        import json, visionpipe
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from visionpipe.core.examples import split_files
        from visionpipe.models import training
        from visionpipe.tasks import get_task
        from tests.models.conftest import digits_config
        config = digits_config({str(tmp_path)!r}, "train.epochs=1", "train.steps_per_epoch=4")
        task = get_task(config, {names!r})
        strategy = training.make_strategy()
        result = training.train(config, task, split_files({examples_uri!r}, "train"),
                                split_files({examples_uri!r}, "eval"), {str(tmp_path / "logs")!r},
                                strategy=strategy)
        gaps = []
        for v in result.model.trainable_variables:
            values = [x.numpy() for x in v.values]
            gaps.append(max(float(np.abs(values[0] - other).max()) for other in values[1:]))
        first = result.model.trainable_variables[0].values
        print(json.dumps({{"replicas": result.replicas, "max_gap": max(gaps),
                          "copies": len(first), "devices": sorted(x.device for x in first),
                          "loss": result.history["loss"][0]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["copies"] == 2
    assert out["devices"][0] != out["devices"][1]
    assert out["max_gap"] == 0.0          # every replica holds the same weights after training
    assert np.isfinite(out["loss"])


class _StopAfter(tf.keras.callbacks.Callback):
    """Interrupts when epoch ``completed + 1`` starts, i.e. after ``completed`` full epochs."""

    def __init__(self, completed):
        super().__init__()
        self.completed = completed

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.completed:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_training_resumes_from_its_last_epoch(digits_examples, tmp_path):
    config, examples_uri, names = digits_examples
    config = digits_config(tmp_path, "train.epochs=3", "train.steps_per_epoch=3")
    backup = str(tmp_path / "backup")
    train, evaluate = _splits(examples_uri)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, get_task(config, names), train, evaluate, str(tmp_path / "l1"),
                       backup_dir=backup, extra_callbacks=[_StopAfter(2)])
    resumed = training.train(config, get_task(config, names), train, evaluate, str(tmp_path / "l2"),
                             backup_dir=backup)
    assert resumed.resumed_from_epoch == 2
    assert len(resumed.history["loss"]) == 1  # only the third epoch ran
    assert not tf.io.gfile.exists(backup)     # cleaned up after success


def test_transfer_learning_from_a_local_weights_file_starts_lower_than_from_scratch(digits_examples, tmp_path):
    config, examples_uri, names = digits_examples
    train, evaluate = _splits(examples_uri)
    donor = training.train(digits_config(tmp_path, "train.epochs=3"), get_task(config, names),
                           train, evaluate, str(tmp_path / "donor"))
    weights = str(tmp_path / "backbone.weights.h5")
    donor.model.get_layer(backbones.BACKBONE_LAYER_NAME).save_weights(weights)

    short = ["train.epochs=1", "train.steps_per_epoch=2", "train.learning_rate=0.001"]
    scratch = training.train(digits_config(tmp_path, *short), get_task(config, names), train,
                             evaluate, str(tmp_path / "scratch"))
    transfer_config = digits_config(tmp_path, *short, f"model.weights={weights}")
    transfer_task = get_task(transfer_config, names)
    transfer = training.train(transfer_config, transfer_task, train, evaluate, str(tmp_path / "t"))
    assert "backbone.weights.h5" in transfer.weights_loaded
    assert transfer.history["val_loss"][0] < scratch.history["val_loss"][0]
    assert transfer.history["val_accuracy"][0] > scratch.history["val_accuracy"][0]


def test_weights_that_do_not_fit_the_backbone_are_a_clear_error(digits_examples, tmp_path):
    config, _, names = digits_examples
    wide = get_task(digits_config(tmp_path, "model.width=16"), names).build_model()
    path = str(tmp_path / "wide.weights.h5")
    wide.get_layer("backbone").save_weights(path)
    task = get_task(digits_config(tmp_path, f"model.weights={path}"), names)
    with pytest.raises(backbones.WeightsError, match=r"model.weights: .*wide.weights.h5 does not fit backbone"):
        task.build_model()


def test_balanced_class_weights_upweight_the_rare_class():
    weights = training.class_weights(np.array([90, 10, 0]))
    assert weights[1] == pytest.approx(5.0) and weights[0] == pytest.approx(100 / 180)
    assert 2 not in weights


def test_oversampling_draws_classes_evenly(digits_examples, tmp_path):
    config, examples_uri, names = digits_examples
    task = get_task(config, names)
    train, _ = _splits(examples_uri)
    counts = np.zeros(task.num_classes)
    counts[:2] = [30, 3]  # pretend only two classes exist, one rare
    dataset = data.pairs(train, task).filter(lambda x, y: tf.argmax(y) < 2)
    balanced = data._balanced(dataset, counts, seed=1).take(400)
    drawn = np.bincount([int(np.argmax(y)) for _, y in balanced.as_numpy_iterator()], minlength=2)
    assert abs(drawn[0] - drawn[1]) < 80


def test_class_balancing_on_a_multilabel_task_is_a_clear_error(digits_examples, tmp_path):
    config, examples_uri, names = digits_examples
    multilabel = digits_config(tmp_path, "task=multilabel", "train.class_weights=balanced")
    train, evaluate = _splits(examples_uri)
    with pytest.raises(ValueError, match="apply to single-label tasks only"):
        training.train(multilabel, get_task(multilabel, names), train, evaluate, str(tmp_path / "l"))


def test_two_trainings_with_the_same_seed_give_the_same_weights(digits_examples, tmp_path):
    """Data order, initialisation and augmentation (stateless, seeded per batch) all follow the
    seeds, and the CPU kernels this model uses are deterministic."""
    _, examples_uri, names = digits_examples
    overrides = ["train.epochs=2", "train.steps_per_epoch=3", "train.eval_steps=1",
                 "augment.rotation=0.2", "augment.vertical_flip=true", "augment.brightness=0.2",
                 "augment.random_crop=0.2", "augment.mixup_alpha=0.2"]

    def weights(run):
        config = digits_config(tmp_path / run, *overrides)
        result = training.train(config, get_task(config, names), *_splits(examples_uri),
                                str(tmp_path / run / "logs"))
        return [v.numpy() for v in result.model.weights]

    # (before augmentation drew stateless per-batch seeds this differed by ~1e-2)
    for a, b in zip(weights("a"), weights("b")):
        np.testing.assert_array_equal(a, b)


def test_count_elements_uses_a_known_cardinality_and_counts_an_unknown_one():
    from visionpipe.models.data import count_elements

    batches = tf.data.Dataset.range(10).batch(3)
    assert count_elements(batches) == 4
    filtered = tf.data.Dataset.range(10).filter(lambda x: x % 2 == 0).batch(2)
    assert int(filtered.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert count_elements(filtered) == 3


def test_nan_loss_stops_training_with_one_error_naming_the_step_and_the_keys(digits_examples, tmp_path):
    config, examples_uri, names = digits_examples
    config = digits_config(tmp_path, "train.epochs=2", "train.steps_per_epoch=3")
    task = get_task(config, names)
    task.target = lambda label_ids: tf.fill([task.num_classes], float("nan"))  # a poisoned target
    backup = tmp_path / "backup"
    with pytest.raises(training.TrainingDivergedError) as raised:
        training.train(config, task, *_splits(examples_uri), str(tmp_path / "logs"),
                       backup_dir=str(backup))
    message = str(raised.value)
    assert "the loss became nan at epoch 1, step 1 (phase1)" in message
    for key in ("train.learning_rate=", "train.mixed_precision=", "train.label_smoothing="):
        assert key in message
    assert not backup.exists()  # a rerun never resumes from the diverged weights


class _PoisonWeights(tf.keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        kernel = self.model.trainable_weights[0]
        kernel.assign(tf.fill(kernel.shape, float("inf")))


def test_non_finite_final_weights_are_an_error_even_when_the_loss_was_finite(digits_examples, tmp_path):
    config, examples_uri, names = digits_examples
    config = digits_config(tmp_path, "train.epochs=1", "train.steps_per_epoch=2")
    with pytest.raises(training.TrainingDivergedError, match=r"training finished with 1 weight\(s\) "
                                                             r"that are NaN or Inf"):
        training.train(config, get_task(config, names), *_splits(examples_uri),
                       str(tmp_path / "logs"), extra_callbacks=[_PoisonWeights()])


_WORKER = textwrap.dedent("""
    import json, sys, visionpipe
    import numpy as np
    from visionpipe.core.examples import split_files
    from visionpipe.models import training
    from visionpipe.tasks import get_task
    from tests.models.conftest import digits_config
    tmp, uri, names, out, batch, strategy = sys.argv[1:7]
    config = digits_config(tmp, "train.epochs=1", "train.steps_per_epoch=4",
                           f"train.batch_size={batch}", f"train.strategy={strategy}",
                           "train.lr_schedule=constant")
    if strategy == "mirrored":  # the initial weights, as train() draws them from the seed
        import tensorflow as tf
        tf.keras.utils.set_random_seed(config.train.seed)
        np.savez(out + ".init.npz", *get_task(config, json.loads(names)).build_model().get_weights())
    result = training.train(config, get_task(config, json.loads(names)), split_files(uri, "train"),
                            split_files(uri, "eval"), f"{tmp}/logs-{out.rsplit('/', 1)[-1]}")
    np.savez(out, *[w for w in result.model.get_weights()])
    print(json.dumps({"replicas": result.replicas, "loss": result.history["loss"][0]}))
""")


def test_two_workers_train_identical_weights_that_match_one_process_at_the_same_global_batch(
        digits_examples, tmp_path):
    import os

    config, examples_uri, names = digits_examples
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))

    def launch(out, batch, strategy, tf_config=None):
        child_env = dict(env, TF_CONFIG=json.dumps(tf_config)) if tf_config else env
        return subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), examples_uri,
                                 json.dumps(names), str(tmp_path / out), str(batch), strategy],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env, cwd=repo)

    workers = [launch(f"worker{i}.npz", 16, "multi_worker",
                      {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(2)]
    try:
        outputs = [w.communicate(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (stdout, stderr) in zip(workers, outputs):
        assert w.returncode == 0, stderr[-3000:]
    assert all(json.loads(out.strip().splitlines()[-1])["replicas"] == 2 for out, _ in outputs)
    single = launch("single.npz", 32, "mirrored")  # one replica, the same global batch of 32
    stdout, stderr = single.communicate(timeout=600)
    assert single.returncode == 0, stderr[-3000:]

    def weights(name):
        with np.load(tmp_path / name) as f:
            return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]

    first, second = weights("worker0.npz"), weights("worker1.npz")
    one, init = weights("single.npz"), weights("single.npz.init.npz")
    assert all(np.array_equal(a, b) for a, b in zip(first, second))  # the workers stay in sync
    # two workers and one process take the same steps: they differ by far less than training
    # moved the weights (batch norm's statistics are per replica, so not exactly)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(first, one))
    moved = max(float(np.abs(b - i).max()) for b, i in zip(one, init))
    assert gap < 0.25 * moved, (gap, moved)


_RESUMABLE_WORKER = textwrap.dedent("""
    import json, os, signal, sys, visionpipe
    import tensorflow as tf
    from visionpipe.core.examples import split_files
    from visionpipe.models import training
    from visionpipe.tasks import get_task
    from tests.models.conftest import digits_config
    tmp, uri, names, backup, kill_at = sys.argv[1:6]

    class KillThisWorker(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == int(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)

    config = digits_config(tmp, "train.epochs=3", "train.steps_per_epoch=2", "train.batch_size=16",
                           "train.strategy=multi_worker", "train.lr_schedule=constant")
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    result = training.train(config, get_task(config, json.loads(names)), split_files(uri, "train"),
                            split_files(uri, "eval"), f"{tmp}/logs-{index}-{kill_at}",
                            backup_dir=backup,
                            extra_callbacks=[KillThisWorker()] if index == 1 else [])
    print(json.dumps({"resumed_from_epoch": result.resumed_from_epoch,
                      "epochs": len(result.history["loss"])}))
""")


@pytest.mark.e2e
def test_a_killed_worker_resumes_multi_worker_training_from_the_last_backed_up_epoch(
        digits_examples, tmp_path):
    """Worker 1 is SIGKILLed as epoch 2 begins; the job is restarted (as Vertex or a TFJob
    restarts it) and both workers resume from the epoch BackupAndRestore saved."""
    import os
    import time

    _, examples_uri, names = digits_examples
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    backup = str(tmp_path / "backup")

    def launch_job(kill_at):
        cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
        return [subprocess.Popen(
            [sys.executable, "-c", _RESUMABLE_WORKER, str(tmp_path), examples_uri,
             json.dumps(names), backup, str(kill_at)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo,
            env=dict(env, TF_CONFIG=json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": i}})))
            for i in range(2)]

    first = launch_job(kill_at=1)
    try:
        _, stderr = first[1].communicate(timeout=600)
        assert first[1].returncode == -9, stderr[-3000:]  # killed, not finished
        time.sleep(3)  # let the chief finish writing its epoch-1 backup before the restart
    finally:
        for worker in first:
            worker.kill()
            worker.communicate()
    restarted = launch_job(kill_at=-1)
    try:
        outputs = [w.communicate(timeout=600) for w in restarted]
    finally:
        for worker in restarted:
            worker.kill()
    for worker, (stdout, stderr) in zip(restarted, outputs):
        assert worker.returncode == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1]) == {"resumed_from_epoch": 1, "epochs": 2}
