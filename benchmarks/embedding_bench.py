"""Embedding benchmarks (issue 14).

1. Fashion-MNIST (Debian's ``dataset-fashion-mnist``; installed with apt-get when missing):
   retrieval recall@1 of 1,000 held-out test queries (100 per class) against (a) the other
   9,000 test images and (b) the 60,000 training images, for
   - raw pixels, L2 search;
   - the embedder (``embedding`` task model, multi-similarity loss on P x K batches) trained
     for ``--budget-s`` seconds of CPU;
   - the same backbone trained as a classifier for the same seconds: its pooled features
     (the input of the softmax layer), L2-normalised.
   Target: embedder recall@1 >= 0.92 after <= 15 min of CPU training.
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


def _config(budget_overrides=()):
    from visionpipe.core.config import load_config

    return load_config(overrides=[
        "task=embedding", "model.backbone=small_cnn", "model.image_size=28", "model.width=32",
        "model.dropout=0.0", "embedding.dim=64", "embedding.loss=multi_similarity",
        "embedding.margin=0.1", "embedding.classes_per_batch=10", "embedding.images_per_class=12",
        *budget_overrides]).validate()


def _pixels(images: np.ndarray):
    import tensorflow as tf

    return tf.repeat(tf.cast(images[..., None], tf.float32), 3, axis=-1)


def _stream(images, labels, seed):
    import tensorflow as tf

    def augment(image, label):
        image = tf.image.random_flip_left_right(image[..., None])[..., 0]
        return image, label

    # a bounded buffer: the P x K sampler filters one copy of this stream per class
    return (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(SHUFFLE_BUFFER, seed=seed)
            .repeat().map(augment, num_parallel_calls=tf.data.AUTOTUNE))


class TimeBudget:
    """Keras callback: stop training once ``seconds`` have passed since the first step ended
    (tracing and filling the input pipeline's buffers are not counted)."""

    def __new__(cls, seconds):
        import tensorflow as tf

        class _Budget(tf.keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start, self.steps = None, 0

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1
                self.start = self.start or time.time()
                if time.time() - self.start > seconds:
                    self.model.stop_training = True

        return _Budget()


def train_embedder(images, labels, seconds, learning_rate=2e-3):
    import tensorflow as tf

    from visionpipe.tasks import get_task

    task = get_task(_config(), [str(c) for c in range(CLASSES)])
    model = task.build_model()
    task.compile_model(model, learning_rate)
    stream = _stream(images, labels, seed=1).map(lambda x, y: (tf.cast(x, tf.int32), tf.cast(y, tf.int32)))
    batches = task.batch_dataset(stream, 0).map(lambda x, y: (_pixels(x), y)).prefetch(2)
    budget = TimeBudget(seconds)
    model.fit(batches, steps_per_epoch=50, epochs=100_000, callbacks=[budget], verbose=0)
    return model, budget.steps


def train_classifier(images, labels, seconds, learning_rate=2e-3, batch_size=120):
    import tensorflow as tf

    from visionpipe.tasks import get_task

    config = _config(["task=classification"])
    task = get_task(config, [str(c) for c in range(CLASSES)])
    model = task.build_model()
    task.compile_model(model, learning_rate)
    batches = (_stream(images, labels, seed=1).batch(batch_size)
               .map(lambda x, y: (_pixels(x), tf.one_hot(y, CLASSES))).prefetch(2))
    budget = TimeBudget(seconds)
    model.fit(batches, steps_per_epoch=50, epochs=100_000, callbacks=[budget], verbose=0)
    features = tf.keras.Model(model.input, model.get_layer("pool").output)
    return model, features, budget.steps


def embed(model, images, batch_size=500) -> np.ndarray:
    out = [model.predict_on_batch(_pixels(images[i:i + batch_size]))
           for i in range(0, len(images), batch_size)]
    vectors = np.concatenate(out).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def fashion_table(train, test, seconds):
    (x_train, y_train), (x_test, y_test) = train, test
    queries, held_out = query_split(y_test)
    rows = []

    def row(name, q, g_held, g_train, metric, steps=""):
        rows.append((name, recall_at_1(q, y_test[queries], g_held, y_test[held_out], metric),
                     recall_at_1(q, y_test[queries], g_train, y_train, metric), steps))

    flat_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    row("raw pixels, L2", flat_test[queries], flat_test[held_out],
        x_train.reshape(len(x_train), -1).astype(np.float32), "l2")
    start = time.time()
    embedder, steps = train_embedder(x_train, y_train, seconds)
    embed_s = time.time() - start
    e_test, e_train = embed(embedder, x_test), embed(embedder, x_train)
    row(f"embedder ({embed_s:.0f} s)", e_test[queries], e_test[held_out], e_train, "ip", steps)
    start = time.time()
    _, features, steps = train_classifier(x_train, y_train, seconds)
    class_s = time.time() - start
    f_test, f_train = embed(features, x_test), embed(features, x_train)
    row(f"classifier's pooled features ({class_s:.0f} s)", f_test[queries], f_test[held_out],
        f_train, "ip", steps)
    print(f"\nFashion-MNIST recall@1, {len(queries)} test queries; training budget {seconds} s each")
    print("| features | vs 9,000 held-out test images | vs the training images | steps |")
    print("|---|---|---|---|")
    for name, held, trained, steps in rows:
        print(f"| {name} | {held:.4f} | {trained:.4f} | {steps} |")
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


def server_latency(embedder, results, gallery_labels, query_images, folder, requests_per_model=200):
    """p50/p99 ms of single-image REST ``:search`` requests (k=10) for each index kind."""
    import requests
    from PIL import Image

    from visionpipe.models import export
    from visionpipe.runtime import vector_index
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer
    from visionpipe.tasks import get_task

    task = get_task(_config(), [str(c) for c in range(CLASSES)])
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
                        help="CPU seconds of training for the embedder and for the classifier each")
    parser.add_argument("--ivf", nargs="+", default=["256,16,8", "1024,16,16", "256,8,8"],
                        help="IVF-PQ settings nlist,m,nprobe (the first is also served)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--train-images", type=int, default=0,
                        help="use only the first N training images (a quick check; 0: all 60,000)")
    args = parser.parse_args(argv)

    import visionpipe  # noqa: F401

    train, test = load_fashion(ensure_fashion_mnist())
    if args.train_images:
        train = (train[0][:args.train_images], train[1][:args.train_images])
    embedder, query_vectors, query_labels, _ = fashion_table(train, test, args.budget_s)
    queries, _ = query_split(test[1])
    extra = min(GALLERY_SIZE - len(train[1]), len(train[1]))
    gallery, gallery_labels = augmented_gallery(embedder, *train, extra)
    with tempfile.TemporaryDirectory() as folder:
        settings = [tuple(int(v) for v in s.split(",")) for s in args.ivf]
        results = index_table(gallery, gallery_labels, query_vectors, query_labels, settings, folder)
        server_latency(embedder, results, gallery_labels, test[0][queries], folder, args.requests)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
