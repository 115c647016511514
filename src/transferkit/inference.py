"""Using a finished run: predict image files, evaluate on a labelled folder."""

import dataclasses
import os

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.runs import CONFIG_FILE, MODEL_FILE, read_json


@dataclasses.dataclass
class Run:
    """A trained run folder: its model and what it was trained on."""

    path: str
    model: object
    class_names: list
    image_size: tuple
    crop: object = None
    outputs: str = "probabilities"


def load_run(path):
    """Loads `model.keras` and `config.json` from a run folder.

    Example:

    >>> run = load_run("runs/ants")  # doctest: +SKIP
    >>> run.class_names  # doctest: +SKIP
    ['ants', 'bees']
    """
    from transferkit.saving import load_model

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise TransferkitError(f"No such run folder: {path}; give the --out folder of a train run.")
    config = read_json(os.path.join(path, CONFIG_FILE))
    try:
        class_names = list(config["class_names"])
        image_size = tuple(int(v) for v in config["image_size"])
    except (KeyError, TypeError, ValueError):
        raise TransferkitError(
            f"{os.path.join(path, CONFIG_FILE)} lacks class_names/image_size; is this a "
            "transferkit train run?"
        ) from None
    model = load_model(os.path.join(path, MODEL_FILE), compile=False)
    outputs = config.get("outputs", "probabilities")
    if outputs not in ("probabilities", "scores"):
        raise TransferkitError(
            f"{os.path.join(path, CONFIG_FILE)}: outputs must be 'probabilities' or 'scores', "
            f"got {outputs!r}."
        )
    return Run(path, model, class_names, image_size, config.get("crop"), outputs)


def predict(run, images, *, batch_size=32):
    """Class probabilities for image files.

    Args:
        run: a `Run` or a run folder path.
        images: paths of image files and/or folders (searched recursively).
        batch_size: Defaults to 32.

    Returns:
        A list of dicts, one per image: `path`, `class`, `probability` (of
        that class) and `probabilities` (all classes, in `class_names`
        order). A run whose model gives decision scores, not probabilities
        (`train(head="linear-svm")`), has `score` and `scores` instead.

    Example:

    >>> for row in predict("runs/ants", ["photo.jpg"]):  # doctest: +SKIP
    ...     print(row["path"], row["class"], row["probability"])
    """
    from transferkit.data.images import list_images, load_image

    run = run if isinstance(run, Run) else load_run(run)
    files = list_images(images)
    rows = []
    for begin in range(0, len(files), batch_size):
        batch, names = [], []
        for path in files[begin:begin + batch_size]:
            try:
                batch.append(load_image(path, run.image_size, crop=run.crop))
            except TransferkitError:
                raise
            except Exception as e:  # Pillow raises many types for bad files
                raise TransferkitError(f"Cannot read {path}: {e}") from None
            names.append(path)
        probabilities = _probabilities(run, np.stack(batch))
        one, every = ("score", "scores") if run.outputs == "scores" else (
            "probability", "probabilities")
        for path, p in zip(names, probabilities):
            best = int(np.argmax(p))
            rows.append({"path": os.fspath(path), "class": run.class_names[best],
                         one: float(p[best]), every: [float(v) for v in p]})
    return rows


def evaluate(run, data_dir, *, batch_size=32, strict=False):
    """Accuracy, per-class precision and recall, and the confusion matrix.

    Args:
        run: a `Run` or a run folder path.
        data_dir: a labelled folder with the run's class subfolders.

    Returns:
        A dict: `accuracy`, `images`, `classes` (per class: `precision`,
        `recall`, `support`), `confusion_matrix` (rows: true class, columns:
        predicted), `class_names`.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from transferkit.data.images import scan_image_folder

    run = run if isinstance(run, Run) else load_run(run)
    folder = scan_image_folder(data_dir, strict=strict)
    unknown = sorted(set(folder.class_names) - set(run.class_names))
    if unknown:
        raise TransferkitError(
            f"{data_dir} has classes the model was not trained on: {unknown}; it knows "
            f"{run.class_names}."
        )
    # The folder's label indices follow its own sorted subfolders; map to the run's.
    labels = np.array([run.class_names.index(folder.class_names[i]) for i in folder.labels])
    x, _ = folder.load(run.image_size, crop=run.crop)
    predicted = np.concatenate([
        _probabilities(run, x[i:i + batch_size]).argmax(axis=1)
        for i in range(0, len(x), batch_size)
    ])
    indices = list(range(len(run.class_names)))
    precision, recall, _, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "images": int(len(labels)),
        "class_names": list(run.class_names),
        "classes": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                           "support": int(support[i])}
                    for i, name in enumerate(run.class_names)},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "skipped_files": [str(p) for p, _ in folder.skipped],
    }


def _probabilities(run, x):
    p = np.asarray(run.model.predict(x, verbose=0))
    if p.shape[-1] == 1:  # a binary (sigmoid) head: P(class 1)
        p = np.concatenate([1 - p, p], axis=-1)
    return p
