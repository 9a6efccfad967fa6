"""Embedding benchmarks (issue 14).

1. Fashion-MNIST (Debian's ``dataset-fashion-mnist``; installed with apt-get when missing):
   retrieval recall@1 of 1,000 held-out test queries (100 per class) against (a) the other
   9,000 test images and (b) the 60,000 training images, for
   - raw pixels, L2 search;
   - the embedder (``embedding`` task model: small_cnn, ArcFace loss on the task's P x K
     batches) trained for ``--budget-s`` seconds of process CPU time (all threads);
   - the same backbone trained as a classifier with the same augmentation, cosine schedule and
     CPU budget: its pooled features (the input of the softmax layer), L2-normalised.
   The input pipeline samples image indices (the P x K sampler filters indices, not images)
   and gathers and augments (flip, shift up to 2 px) whole batches.
   Target: embedder recall@1 >= 0.92 after <= 15 min of CPU training. ``--validation`` picks
   a recipe on 6,000 training images held out (600 per class), never on the test queries.
2. faiss IVF-PQ vs exact search over a 100,000-vector gallery: the embedder's embeddings of
   the 60,000 training images plus 40,000 augmented copies of them (horizontal flip and a
   2-pixel shift; real embeddings, not random vectors), queried by the 1,000 test queries:
   recall@10 (of the exact top 10, and of the query's class), index bytes, query time; and
   the latency p50/p99 of single-image requests through the server's REST ``:search``.
   Targets: recall@10 ratio >= 0.95 at >= 10x smaller and >= 5x faster queries.

``python -m benchmarks embedding`` (defaults), or with options
``python -m benchmarks.embedding_bench [--budget-s 900] [--ivf 256,16,8 1024,16,16]``
"""
from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

os.environ["TF_USE_LEGACY_KERAS"] = "1"

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_PACKAGE = "dataset-fashion-mnist"
QUERIES_PER_CLASS = 100
GALLERY_SIZE = 100_000
CLASSES = 10
SHUFFLE_BUFFER = 8192


def ensure_fashion_mnist() -> str:
    """The package's folder, installing it with apt-get (as root) when it is missing."""
    if not os.path.isdir(FASHION_DIR):
        print(f"installing {FASHION_PACKAGE} with apt-get", flush=True)
        subprocess.run(["apt-get", "install", "-y", FASHION_PACKAGE], check=True,
                       stdout=subprocess.DEVNULL)
    return FASHION_DIR


def _idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion(folder: str):
    def part(prefix):
        return (_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz")),
                _idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64))

    return part("train"), part("t10k")


def query_split(labels: np.ndarray):
    """The first ``QUERIES_PER_CLASS`` test images of each class are queries, the rest the
    held-out gallery."""
    queries = np.sort(np.concatenate([np.flatnonzero(labels == c)[:QUERIES_PER_CLASS]
                                      for c in range(CLASSES)]))
    return queries, np.setdiff1d(np.arange(len(labels)), queries)


def top_k(queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
    import faiss

    gallery = np.ascontiguousarray(gallery, np.float32)
    index = faiss.IndexFlatIP(gallery.shape[1]) if metric == "ip" else faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    return index.search(np.ascontiguousarray(queries, np.float32), k)[1]


def recall_at_1(queries, query_labels, gallery, gallery_labels, metric="ip") -> float:
    nearest = top_k(queries, gallery, 1, metric)[:, 0]
    return float(np.mean(gallery_labels[nearest] == query_labels))


#: the recipe (chosen on the validation split, ``--validation``): see ``main``'s options
DEFAULTS = {"loss": "arcface", "width": 32, "dim": 64, "margin": 0.1, "scale": 24.0,
            "lr": 3e-3, "shift": 2, "classes_per_batch": 10, "images_per_class": 12}


def _config(recipe, extra=()):
    from visionpipe.core.config import load_config

    return load_config(overrides=[
        "task=embedding", "model.backbone=small_cnn", "model.image_size=28",
        f"model.width={recipe['width']}", "model.dropout=0.0", f"embedding.dim={recipe['dim']}",
        f"embedding.loss={recipe['loss']}", f"embedding.margin={recipe['margin']}",
        f"embedding.scale={recipe['scale']}",
        f"embedding.classes_per_batch={recipe['classes_per_batch']}",
        f"embedding.images_per_class={recipe['images_per_class']}", *extra]).validate()


def _pixels(images):
    import tensorflow as tf

    return tf.repeat(tf.cast(images[..., None], tf.float32), 3, axis=-1)


def _augment(images, seed, shift: int):
    """A batch [B, 28, 28] uint8: each image flipped left-right with probability 1/2 and moved
    by up to ``shift`` pixels each way (zero padding); stateless draws from ``seed``."""
    import tensorflow as tf

    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    flip = tf.random.stateless_uniform([n], seed) < 0.5
    images = tf.where(flip[:, None, None], images[:, :, ::-1], images)
    if not shift:
        return images
    offsets = tf.random.stateless_uniform([n, 2], seed + 1, 0, 2 * shift + 1, tf.int32)
    padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift]])
    rows = offsets[:, :1] + tf.range(h)[None]
    cols = offsets[:, 1:] + tf.range(w)[None]
    return tf.gather(tf.gather(padded, rows, batch_dims=1), cols, axis=2, batch_dims=1)


def _index_stream(labels, seed):
    """(training image index, class id) pairs, shuffled and repeated: the samplers draw
    indices, and only the chosen images are gathered (a P x K sampler filters one copy of its
    input stream per class; filtering indices, not images, keeps that cheap)."""
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices((tf.range(len(labels), dtype=tf.int64),
                                                tf.constant(labels, tf.int32)))
            .shuffle(SHUFFLE_BUFFER, seed=seed).repeat())


def _gathered(batches, images, shift, seed=7):
    """Index batches -> augmented pixel batches (the images stay one in-memory tensor)."""
    import tensorflow as tf

    pixels = tf.constant(images)
    seeds = tf.data.Dataset.counter(dtype=tf.int64).map(lambda i: tf.stack([tf.constant(seed, tf.int64), i]))
    return (tf.data.Dataset.zip((batches, seeds))
            .map(lambda batch, s: (_pixels(_augment(tf.gather(pixels, batch[0]), s, shift)), batch[1]),
                 num_parallel_calls=2).prefetch(2))


class CpuBudget:
    """Keras callback: the learning rate follows a cosine from ``lr`` to 0 over ``seconds`` of
    this process's CPU time (all threads: ``time.process_time``, what a shared machine cannot
    inflate), after a linear warm-up over the first 3%, and training stops when the budget is
    spent. Counted from the start of ``fit`` (tracing included)."""

    def __new__(cls, seconds, lr):
        import math

        import tensorflow as tf

        class _Budget(tf.keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start, self.steps = time.process_time(), 0
                self.wall = time.time()

            def on_train_batch_begin(self, batch, logs=None):
                done = min((time.process_time() - self.start) / seconds, 1.0)
                rate = lr * min(1.0, done / 0.03 + 1e-3) * 0.5 * (1 + math.cos(math.pi * done))
                self.model.optimizer.learning_rate.assign(rate)

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1
                if time.process_time() - self.start > seconds:
                    self.model.stop_training = True

            def on_train_end(self, logs=None):
                self.cpu_s = time.process_time() - self.start
                self.wall_s = time.time() - self.wall

        return _Budget()


def train_embedder(images, labels, seconds, recipe):
    from visionpipe.tasks import get_task

    task = get_task(_config(recipe), [str(c) for c in range(CLASSES)])
    model = task.build_model()
    task.compile_model(model, recipe["lr"])
    task.train_class_counts = np.bincount(labels, minlength=CLASSES)  # as the trainer sets it
    batches = _gathered(task.batch_dataset(_index_stream(labels, seed=1), 0), images, recipe["shift"])
    budget = CpuBudget(seconds, recipe["lr"])
    model.fit(batches, steps_per_epoch=50, epochs=100_000, callbacks=[budget], verbose=0)
    return model, budget


def train_classifier(images, labels, seconds, recipe):
    """The same backbone with a softmax head, the same augmentation, schedule and CPU budget,
    batches of P x K images (plain shuffled ones)."""
    import tensorflow as tf

    from visionpipe.tasks import get_task

    task = get_task(_config(recipe, ["task=classification"]), [str(c) for c in range(CLASSES)])
    model = task.build_model()
    task.compile_model(model, recipe["lr"])
    batch = recipe["classes_per_batch"] * recipe["images_per_class"]
    batches = _gathered(_index_stream(labels, seed=1).batch(batch), images, recipe["shift"]).map(
        lambda x, y: (x, tf.one_hot(y, CLASSES)))
    budget = CpuBudget(seconds, recipe["lr"])
    model.fit(batches, steps_per_epoch=50, epochs=100_000, callbacks=[budget], verbose=0)
    features = tf.keras.Model(model.input, model.get_layer("pool").output)
    return model, features, budget


def embed(model, images, batch_size=500) -> np.ndarray:
    out = [model.predict_on_batch(_pixels(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
    vectors = np.concatenate(out).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def validation_split(train, per_class: int = 600):
    """The last ``per_class`` training images of each class: a validation set to choose the
    recipe on (the test images are not looked at); returns (the rest, validation)."""
    images, labels = train
    held = np.sort(np.concatenate([np.flatnonzero(labels == c)[-per_class:] for c in range(CLASSES)]))
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return (images[rest], labels[rest]), (images[held], labels[held])


def fashion_table(train, test, seconds, recipe, classifier=True, label="test"):
    """Recall@1 of ``test``'s queries vs the rest of ``test`` and vs ``train``: raw pixels,
    the embedder and (``classifier``) the classifier's pooled features."""
    (x_train, y_train), (x_test, y_test) = train, test
    queries, held_out = query_split(y_test)
    rows = []

    def row(name, q, g_held, g_train, metric, budget=None):
        rows.append((name, recall_at_1(q, y_test[queries], g_held, y_test[held_out], metric),
                     recall_at_1(q, y_test[queries], g_train, y_train, metric),
                     "" if budget is None else
                     f"{budget.steps} | {budget.cpu_s:.0f} | {budget.wall_s:.0f} | "
                     f"{budget.steps * recipe['classes_per_batch'] * recipe['images_per_class'] / budget.cpu_s:.0f}"))

    flat_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    row("raw pixels, L2", flat_test[queries], flat_test[held_out],
        x_train.reshape(len(x_train), -1).astype(np.float32), "l2")
    embedder, budget = train_embedder(x_train, y_train, seconds, recipe)
    e_test, e_train = embed(embedder, x_test), embed(embedder, x_train)
    row(f"embedder ({recipe['loss']})", e_test[queries], e_test[held_out], e_train, "ip", budget)
    if classifier:
        _, features, budget = train_classifier(x_train, y_train, seconds, recipe)
        f_test, f_train = embed(features, x_test), embed(features, x_train)
        row("same backbone as a classifier: pooled features before the softmax", f_test[queries],
            f_test[held_out], f_train, "ip", budget)
    print(f"\nFashion-MNIST recall@1, {len(queries)} {label} queries (100 per class); "
          f"training budget {seconds:.0f} CPU s each (process CPU time, all threads); recipe "
          + ", ".join(f"{k} {v}" for k, v in recipe.items()))
    print(f"| features | vs the other {len(held_out):,} {label} images | vs the {len(y_train):,} "
          "training images | steps | CPU s | wall s | images per CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, held, trained, steps in rows:
        print(f"| {name} | {held:.4f} | {trained:.4f} | {steps or ' | | |'} |")
    return embedder, e_test[queries], y_test[queries], rows


def augmented_gallery(embedder, x_train, y_train, extra: int):
    """The training embeddings plus ``extra`` augmented copies (flip + 2-px shift)."""
    copies = np.roll(x_train[:extra, :, ::-1], 2, axis=2)
    vectors = np.concatenate([embed(embedder, x_train), embed(embedder, copies)])
    return vectors, np.concatenate([y_train, y_train[:extra]])


def _timed_search(index, queries, k, one_at_a_time: bool):
    start = time.perf_counter()
    if one_at_a_time:
        found = np.concatenate([index.search(queries[i:i + 1], k)[1] for i in range(len(queries))])
    else:
        found = index.search(queries, k)[1]
    return found, (time.perf_counter() - start) / len(queries)


def index_table(gallery, gallery_labels, queries, query_labels, settings, folder):
    """Exact search and IVF-PQ at each ``(nlist, m, nprobe)`` of ``settings``, one faiss thread
    (the 2 cores are shared; a single-query latency is what one request pays)."""
    import faiss

    from visionpipe.runtime import vector_index

    faiss.omp_set_num_threads(1)
    queries = np.ascontiguousarray(queries, np.float32)
    k = 10
    results = {}
    for kind, (nlist, m, nprobe) in [("flat", settings[0])] + [("ivfpq", s) for s in settings]:
        start = time.time()
        index, factory = vector_index.build(gallery, kind, nlist=nlist, m=m, nprobe=nprobe)
        build_s = time.time() - start
        name = "flat" if kind == "flat" else f"{factory}, nprobe {nprobe}"
        path = os.path.join(folder, f"{len(results)}.faiss")
        faiss.write_index(index, path)
        found, batch_s = _timed_search(index, queries, k, one_at_a_time=False)
        _, single_s = _timed_search(index, queries, k, one_at_a_time=True)
        results[name] = {"index": index, "factory": factory, "nprobe": nprobe, "found": found,
                         "bytes": os.path.getsize(path), "batch_ms": batch_s * 1e3,
                         "single_ms": single_s * 1e3, "build_s": build_s,
                         "class_recall_at_10": float(np.mean(
                             [(gallery_labels[row] == label).any() for row, label in zip(found, query_labels)])),
                         "class_recall_at_1": float(np.mean(gallery_labels[found[:, 0]] == query_labels))}
    exact = results["flat"]
    approx = {name: r for name, r in results.items() if name != "flat"}
    for r in approx.values():
        r["overlap"] = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(r["found"], exact["found"])]))
    print(f"\nfaiss over {len(gallery):,} embeddings (dim {gallery.shape[1]}), {len(queries)} queries, "
          f"k={k}, 1 thread; each IVF-PQ cell: its value (ratio to exact)")
    print("| | exact (Flat) | " + " | ".join(approx) + " |")
    print("|---|---|" + "---|" * len(approx))

    def line(what, key, fmt, smaller_is_better=False):
        cells = []
        for r in approx.values():
            ratio = r[key] / exact[key]
            extra = (f", {1 / ratio:.1f}x {'smaller' if key == 'bytes' else 'faster'}"
                     if smaller_is_better else "")
            cells.append(f"{r[key]:{fmt}} ({ratio:.3f}{extra})")
        print(f"| {what} | {exact[key]:{fmt}} | " + " | ".join(cells) + " |")

    exact["overlap"] = 1.0
    line("neighbour recall@10 (share of the exact top 10)", "overlap", ".4f")
    line("class recall@10", "class_recall_at_10", ".4f")
    line("class recall@1", "class_recall_at_1", ".4f")
    line("index bytes", "bytes", ",", smaller_is_better=True)
    line("query ms, one at a time", "single_ms", ".4f", smaller_is_better=True)
    line("query ms per query, batch of 1,000", "batch_ms", ".4f", smaller_is_better=True)
    print(f"| build s | {exact['build_s']:.1f} | " + " | ".join(f"{r['build_s']:.1f}" for r in approx.values()) + " |")
    return results


def server_latency(embedder, recipe, results, gallery_labels, query_images, folder,
                   requests_per_model=200):
    """p50/p99 ms of single-image REST ``:search`` requests (k=10) for each index kind."""
    import requests
    from PIL import Image

    from visionpipe.models import export
    from visionpipe.runtime import vector_index
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer
    from visionpipe.tasks import get_task

    task = get_task(_config(recipe), [str(c) for c in range(CLASSES)])
    export_dir = os.path.join(folder, "export")
    export.export_saved_model(embedder, task, export_dir)
    fingerprint = vector_index.model_fingerprint(export_dir)
    rows = [{"id": int(c), "name": str(c), "source": f"gallery/{i}"} for i, c in enumerate(gallery_labels)]
    served = os.path.join(folder, "served")
    results = {"flat": results["flat"], "ivfpq": next(r for n, r in results.items() if n != "flat")}
    for kind, result in results.items():
        version = os.path.join(served, kind, "1")
        shutil.copytree(export_dir, version)
        vector_index.write(os.path.join(version, vector_index.INDEX_DIR), result["index"], rows,
                           fingerprint, {"kind": kind, "factory": result["factory"],
                                         "nprobe": result["nprobe"]})
    config_file = os.path.join(folder, "models.config")
    with open(config_file, "w") as f:
        f.write("model_config_list {\n" + "".join(
            f'  config {{ name: "{kind}" base_path: "{os.path.join(served, kind)}" '
            f'model_platform: "tensorflow" }}\n' for kind in results) + "}\n")

    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    bodies = [json.dumps({"instances": [{"b64": png(image)}], "k": 10}) for image in query_images]
    latencies = {}
    options = ServerOptions(port=0, rest_api_port=0, model_config_file=config_file,
                            file_system_poll_wait_seconds=0)
    with ModelServer(options) as server, requests.Session() as session:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models"
        for kind in results:
            for body in bodies[:10]:  # warm-up: the index loads on the first search
                session.post(f"{url}/{kind}:search", data=body, timeout=120).raise_for_status()
            times = []
            for i in range(requests_per_model):
                start = time.perf_counter()
                response = session.post(f"{url}/{kind}:search", data=bodies[i % len(bodies)], timeout=120)
                times.append((time.perf_counter() - start) * 1e3)
                response.raise_for_status()
            latencies[kind] = (np.percentile(times, 50), np.percentile(times, 99))
    print(f"\nREST :search, one image per request, k=10, {requests_per_model} requests each "
          f"(IVF-PQ: {results['ivfpq']['factory']}, nprobe {results['ivfpq']['nprobe']})")
    print("| | exact | IVF-PQ | IVF-PQ / exact |")
    print("|---|---|---|---|")
    for i, name in enumerate(("p50 ms", "p99 ms")):
        print(f"| {name} | {latencies['flat'][i]:.2f} | {latencies['ivfpq'][i]:.2f} | "
              f"{latencies['ivfpq'][i] / latencies['flat'][i]:.3f} |")
    return latencies


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedding_bench")
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="CPU seconds (process CPU time) of training for the embedder and for "
                             "the classifier each")
    parser.add_argument("--validation", action="store_true",
                        help="choose a recipe: train on 54,000 training images, query the other "
                             "6,000 (the test images are not used); no index or server part")
    parser.add_argument("--no-classifier", action="store_true",
                        help="skip the same-backbone classifier (recipe search)")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--ivf", nargs="+", default=["256,16,8", "1024,16,16", "256,8,8"],
                        help="IVF-PQ settings nlist,m,nprobe (the first is also served)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--train-images", type=int, default=0,
                        help="use only the first N training images (a quick check; 0: all 60,000)")
    args = parser.parse_args(argv)
    recipe = {key: getattr(args, key) for key in DEFAULTS}

    import visionpipe  # noqa: F401

    train, test = load_fashion(ensure_fashion_mnist())
    if args.train_images:
        train = (train[0][:args.train_images], train[1][:args.train_images])
    if args.validation:
        fitting, validation = validation_split(train)
        fashion_table(fitting, validation, args.budget_s, recipe, not args.no_classifier,
                      label="validation")
        return 0
    embedder, query_vectors, query_labels, _ = fashion_table(train, test, args.budget_s, recipe,
                                                             not args.no_classifier)
    queries, _ = query_split(test[1])
    extra = min(GALLERY_SIZE - len(train[1]), len(train[1]))
    gallery, gallery_labels = augmented_gallery(embedder, *train, extra)
    print(f"\ngallery: the embedder's embeddings of the {len(train[1]):,} training images and of "
          f"{extra:,} flipped and 2-px-shifted copies of the first of them ({len(gallery):,} "
          "real embeddings, no random vectors); queries: the 1,000 test queries")
    with tempfile.TemporaryDirectory() as folder:
        settings = [tuple(int(v) for v in s.split(",")) for s in args.ivf]
        results = index_table(gallery, gallery_labels, query_vectors, query_labels, settings, folder)
        server_latency(embedder, recipe, results, gallery_labels, test[0][queries], folder,
                       args.requests)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
