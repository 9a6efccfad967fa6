"""``visionpipe explain``: Grad-CAM (or another ``models.explain`` method) overlays of images
for an exported model, one PNG per image, written at the image's own size."""
from __future__ import annotations

from pathlib import Path
from visionpipe.core.errors import UserError


def register(subparsers) -> None:
    from visionpipe.models.explain import METHODS

    p = subparsers.add_parser(
        "explain", help="write Grad-CAM / saliency / occlusion overlays of images for an "
                        "exported model (a pushed version directory)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True,
                   help="a SavedModel directory written by VisionPipe (e.g. serving_models/<name>/1)")
    p.add_argument("--method", choices=METHODS, default="gradcam")
    p.add_argument("--class", dest="class_name", default="",
                   help="explain this class (a name of the export's labels.txt); default: "
                        "each image's predicted class")
    p.add_argument("--layer", default="",
                   help="Grad-CAM: the layer whose feature maps are weighed (default: the last "
                        "layer with a 4-D output, e.g. the backbone)")
    p.add_argument("--output_dir", default="explanations", help="where the PNGs are written")
    p.set_defaults(handler=cmd_explain)


def _load(model_dir: str):
    """(Keras model, class names) of an export; UserError naming --model otherwise."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.core.errors import ConfigError
    from visionpipe.models import export
    from visionpipe.tasks import task_class

    if not (Path(model_dir) / "saved_model.pb").exists():
        raise UserError(f"--model {model_dir}: no saved_model.pb there (pass a version directory, "
                        f"e.g. serving_models/<name>/1)")
    name = export.read_task_name(model_dir)
    if name:
        try:
            unsupported = task_class(name).robustness_unsupported
        except ConfigError:  # an export of a task this install does not know
            unsupported = f"its task {name!r} is not registered here"
        if unsupported:
            raise UserError(f"--model {model_dir}: explanations do not apply: {unsupported}")
    try:
        model = export.load_keras_model(model_dir)
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise UserError(f"--model {model_dir}: not a loadable Keras SavedModel "
                        f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
                        ) from None
    try:
        names = export.read_class_names(model_dir)
    except tf.errors.NotFoundError:
        names = []
    return model, names


def cmd_explain(args) -> int:
    import numpy as np

    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.cli.pipeline_commands import _check_decodable, _read_images
    from visionpipe.models import explain, preprocessing

    encoded = _read_images(args.images)
    _check_decodable(args.images, encoded)
    model, names = _load(args.model)
    if args.class_name and args.class_name not in names:
        raise UserError(f"--class {args.class_name!r}: not a class of the model "
                        f"(labels.txt has {names[:20]})")
    if args.layer:
        try:
            model.get_layer(args.layer)
        except ValueError:
            raise UserError(f"--layer {args.layer!r}: no such layer; the model's layers are "
                            f"{[layer.name for layer in model.layers]}") from None
    size = tuple(model.inputs[0].shape[1:3])
    pixels = preprocessing.preprocess_batch(tf.constant(encoded), size)
    outputs = model(pixels, training=False).numpy().reshape(len(encoded), -1)
    ids = (np.full(len(encoded), names.index(args.class_name)) if args.class_name
           else np.argmax(outputs, axis=-1))
    target = explain.class_target(ids)
    if args.method.startswith("gradcam"):
        maps = explain.gradcam(model, pixels, target, args.layer or None,
                               plus_plus=args.method == "gradcam++")
    else:
        maps = explain.explain(model, pixels, target, args.method)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path, image_bytes, heatmap, class_id, row in zip(args.images, encoded, maps, ids, outputs):
        image = preprocessing.decode_image(tf.constant(image_bytes)).numpy()
        full = tf.image.resize(heatmap[..., None], image.shape[:2]).numpy()[..., 0]
        written = out / f"{Path(path).stem}_{args.method.replace('+', 'p')}.png"
        tf.io.write_file(str(written), tf.io.encode_png(explain.overlay(image, full)))
        label = names[class_id] if class_id < len(names) else str(class_id)
        print(f"{path}: {label} {row[class_id]:.3f}; {args.method} -> {written}")
    return 0
