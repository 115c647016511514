"""Using a finished run: predict image files, evaluate on a labelled folder.

`mc_dropout_predict` (and `predict(..., mc_samples=T)`) adds Monte Carlo
dropout (seed 003): T stochastic passes with the dropout layers on and
everything else in inference mode, whose spread says how sure the model is.
"""

import contextlib
import dataclasses
import inspect
import numbers
import os
import random
import warnings

import keras
import numpy as np

from transferkit._compat import is_functional
from transferkit._walk import iter_layers
from transferkit.backbones.text import TokenizedTexts
from transferkit.errors import TransferkitError
from transferkit.evaluation.tta import check_views, tta_scores
from transferkit.progress import Progress
from transferkit.runs import CONFIG_FILE, MODEL_FILE, read_run_config


@dataclasses.dataclass
class Run:
    """A trained run folder: its model and what it was trained on.

    An image run has `image_size` (and `crop`); a text run has `backbone`
    (whose tokenizer makes the model's input), `max_length` and the
    `columns` of its training file (`TextColumns` arguments, as a dict).
    `task` is what it predicts: `"classes"`, `"multilabel"` (a probability
    per label of `class_names`, called from its threshold in `thresholds`)
    or `"regression"` (a number, named `class_names[0]`).
    """

    path: str
    model: object
    class_names: list
    image_size: tuple | None
    crop: object = None
    outputs: str = "probabilities"
    backbone: str | None = None
    max_length: int | None = None
    columns: dict | None = None
    task: str = "classes"
    thresholds: list | None = None

    @property
    def text(self):
        """Whether the model reads texts (token ids)."""
        return self.max_length is not None

    def encode(self, texts):
        """Texts as this run's model input: token ids, `(len(texts), max_length)`."""
        from transferkit.backbones.text import tokenize

        return tokenize(list(texts), self.backbone, self.max_length)


def load_model(path, **kwargs):
    """Loads any `.keras` model transferkit wrote, compiled as it was saved.

    `transferkit.saving.load_model` with transferkit's own Keras objects
    (per-block optimizers, learning-rate schedules) registered first.

    Args:
        path: a `.keras` file.
        **kwargs: passed to `keras.saving.load_model` (e.g. `compile=False`).

    Example:

    >>> model = load_model("runs/ants/model.keras")  # doctest: +SKIP
    """
    import transferkit.optim.optimizers  # noqa: F401  (registers them, and the schedules)
    from transferkit import saving

    return saving.load_model(path, **kwargs)


def load_run(path):
    """Loads `model.keras` and `config.json` from a run folder.

    Example:

    >>> run = load_run("runs/ants")  # doctest: +SKIP
    >>> run.class_names  # doctest: +SKIP
    ['ants', 'bees']
    """
    from transferkit.saving import file_sha256, load_model

    path = os.fspath(path)
    config = read_run_config(path)
    class_names = list(config["class_names"])
    max_length = config.get("max_length")
    image_size = None if max_length is not None else tuple(
        int(v) for v in config["image_size"])
    model_file = os.path.join(path, MODEL_FILE)
    model = load_model(model_file, compile=False)
    recorded = config.get("model_sha256")
    if recorded is not None and file_sha256(model_file) != recorded:
        warnings.warn(f"{model_file} is not the file this run wrote (its SHA-256 differs from "
                      f"config.json's); its predictions may not be the run's.", stacklevel=2)
    task = config.get("task", "classes")
    units = model.outputs[0].shape[-1]
    expected = 1 if task == "regression" else len(class_names)
    if units != expected and not (task == "classes" and units == 1 and expected == 2):
        raise TransferkitError(
            f"{os.path.join(path, CONFIG_FILE)} names {len(class_names)} "
            f"{'label' if task == 'multilabel' else 'classe'}s but {model_file} has {units} "
            "outputs; the two files are not from the same run."
        )
    outputs = config.get("outputs", "probabilities")
    allowed = _OUTPUTS.get(task)
    if allowed is None or outputs not in allowed:
        raise TransferkitError(
            f"{os.path.join(path, CONFIG_FILE)}: a {task!r} run's outputs are "
            f"{' or '.join(map(repr, allowed or ['?']))}; got {outputs!r}."
        )
    thresholds = config.get("thresholds")
    if task == "multilabel" and (thresholds is None or len(thresholds) != len(class_names)):
        raise TransferkitError(f"{os.path.join(path, CONFIG_FILE)} lacks a threshold per "
                               "label; the run folder is incomplete.")
    return Run(path, model, class_names, image_size, config.get("crop"), outputs,
               backbone=config.get("backbone"), max_length=max_length,
               columns=config.get("arguments", {}).get("columns"), task=task,
               thresholds=thresholds)


# What a run's model outputs (config.json's "outputs"), by task.
_OUTPUTS = {"classes": ("probabilities", "scores"), "multilabel": ("label probabilities",),
            "regression": ("values",)}


def predict(run, images=None, *, texts=None, batch_size=32, mc_samples=None, seed=None,
            columns=None, tta=None):
    """Class probabilities for image files or texts, optionally with their uncertainty.

    Args:
        run: a `Run` or a run folder path.
        images: paths of image files and/or folders (searched recursively);
            for a text run, paths of text files: `.txt` (one text a line)
            or CSV, TSV, JSONL (their text column; no label needed).
        texts: for a text run, texts to classify (a list of `str`), in
            place of `images`.
        columns: for text files, a `TextColumns` saying where the texts
            are. Defaults to `None`: the run's training columns.
        batch_size: Defaults to 32.
        mc_samples: `None` (default) for the model's deterministic
            prediction, or an int T >= 2 for Monte Carlo dropout: the mean
            of T passes with dropout on (see `mc_dropout_predict`).
        seed: with `mc_samples`, an int for repeatable dropout masks.
            Defaults to `None`.
        tta: optional test-time augmentation for images: the mean of the
            scores of the first `tta` views (1-8: the image, its mirror
            image, centre and corner crops; `transferkit.evaluation.tta`).

    Returns:
        A list of dicts, one per image: `path` (for texts: `text`, and
            `path` and `line` when read from a file), `class`, `probability` (of
        that class) and `probabilities` (all classes, in `class_names`
        order). A multi-label run gives `labels` (those at or above their
        threshold, most probable first) and `probabilities` (every label's);
        a regression run gives `value`. A run whose model gives decision scores, not probabilities
        (`train(head="linear-svm")`), has `score` and `scores` instead. With
        `mc_samples` the probabilities are the Monte Carlo means, and each
        row also has `std` (the standard deviation of the predicted class's
        probability across the passes), `stds` (every class's) and `entropy`
        (of the mean probabilities, in nats).

    Example:

    >>> for row in predict("runs/ants", ["photo.jpg"]):  # doctest: +SKIP
    ...     print(row["path"], row["class"], row["probability"])
    >>> row = predict("runs/ants", ["photo.jpg"], mc_samples=30)[0]  # doctest: +SKIP
    >>> print(f"{row['class']} {row['probability']:.3f} ± {row['std']:.3f}")  # doctest: +SKIP
    ants 0.912 ± 0.031
    """
    from transferkit.data.images import list_images
    from transferkit.data.stream import ImageFiles, read_ahead

    if mc_samples is not None:
        _check_mc_arguments(mc_samples, batch_size, seed)
    tta = check_views(tta)
    if tta is not None and mc_samples is not None:
        raise TransferkitError("Give tta or mc_samples, not both.")
    run = run if isinstance(run, Run) else load_run(run)
    _check_tta(run, tta)
    if mc_samples is not None and run.task != "classes":
        raise TransferkitError(f"{run.path} predicts {_TASK_WORDS[run.task]}; mc_samples is "
                               "for class probabilities. Predict without it.")
    if mc_samples is not None and run.outputs == "scores":
        raise TransferkitError(
            f"{run.path}: this run's model gives decision scores (a linear SVM head), not "
            "probabilities, and has no dropout; predict without mc_samples."
        )
    if (images is None) == (texts is None):
        raise TransferkitError("predict takes files (images=...) or texts (texts=...), one "
                               "of the two.")
    if texts is not None and not run.text:
        raise TransferkitError(f"{run.path} classifies images; pass image files, not texts.")
    scored = None  # the texts' scores, when computed all at once
    if run.text:
        sources = _texts_to_predict(run, images, texts, columns)
        if mc_samples is None:  # in batches of similar lengths (`text_scores`)
            x = scored = text_scores(run, [t for t, _ in sources], batch_size=batch_size)
        else:
            x = TokenizedTexts([t for t, _ in sources], run.backbone, run.max_length)
    else:
        files = list_images(images)
        sources = [({"path": os.fspath(f)}, f) for f in files]
        x = ImageFiles(files, run.image_size, crop=run.crop)  # decoded batch by batch
    one, every = ("score", "scores") if run.outputs == "scores" else (
        "probability", "probabilities")
    rows = []
    sampler = None if mc_samples is None else _MCDropout(run.model, seed)
    with sampler or contextlib.nullcontext(), \
            Progress(len(sources), "Predicting", unit="texts" if run.text else "images") \
            as progress:
        for begin, batch in read_ahead(x, batch_size):
            progress.update(len(batch))
            names = sources[begin:begin + batch_size]
            if scored is not None:
                spread, probabilities = None, batch
            elif sampler is None:
                spread, probabilities = None, class_scores(run, batch, tta=tta)
            else:
                spread = sampler.predict(batch, mc_samples, batch_size)
                probabilities = spread.mean
            for i, (source, p) in enumerate(zip(names, probabilities)):
                if run.task != "classes":
                    rows.append({**(source[1] if run.text else source[0]),
                                 **_target_row(run, p)})
                    continue
                best = int(np.argmax(p))
                row = {**(source[1] if run.text else source[0]), "class": run.class_names[best],
                       one: float(p[best]), every: [float(v) for v in p]}
                if spread is not None:
                    row.update(std=float(spread.std[i, best]),
                               stds=[float(v) for v in spread.std[i]],
                               entropy=float(spread.entropy[i]))
                rows.append(row)
    return rows


def evaluate(run, data_dir, *, batch_size=32, strict=False, columns=None, tta=None,
             table=None, skip_bad_rows=False):
    """Accuracy, per-class precision, recall and F1, and the confusion matrix.

    A multi-label run gives micro/macro-F1 and mAP at its thresholds (and
    per label); a regression run MAE, RMSE and R²
    (`transferkit.training.targets`).

    Args:
        run: a `Run` or a run folder path.
        data_dir: a labelled folder with the run's class subfolders; for a
            text run, a labelled text file; with `table`, an image folder.
        table: a `LabelTable` whose `labels` table labels `data_dir` (needed
            for multi-label and regression runs); `skip_bad_rows` as in
            `read_label_table`.
        columns: for a text file, a `TextColumns`. Defaults to `None`: the
            run's training columns.
        tta: optional test-time augmentation for images, as in `predict`.

    Returns:
        A dict: `accuracy`, `images` (or `texts`), `classes` (per class:
        `precision`, `recall`, `f1`, `support`), `confusion_matrix` (rows:
        true class, columns: predicted), `class_names`.
    """
    from transferkit.data.images import scan_image_folder

    tta = check_views(tta)
    run = run if isinstance(run, Run) else load_run(run)
    _check_tta(run, tta)
    if run.text:
        return _evaluate_texts(run, data_dir, batch_size, columns)
    if run.task != "classes" and table is None:
        raise TransferkitError(f"{run.path} predicts {_TASK_WORDS[run.task]}: evaluate it on "
                               "a folder with its label table (--labels TABLE).")
    if table is not None:
        from transferkit.data.tables import read_label_table

        folder = read_label_table(data_dir, table.labels, strict=strict, **{
            **table.read_arguments(skip_bad_rows),
            "task": "classes" if run.task == "classes" else run.task})
        if run.task != "classes":
            return _evaluate_targets(run, folder, batch_size, tta)
    else:
        folder = scan_image_folder(data_dir, strict=strict)
    unknown = sorted(set(folder.class_names) - set(run.class_names))
    if unknown:
        raise TransferkitError(
            f"{data_dir} has classes the model was not trained on: {unknown}; it knows "
            f"{run.class_names}."
        )
    # The folder's label indices follow its own sorted subfolders; map to the run's.
    labels = np.array([run.class_names.index(folder.class_names[i]) for i in folder.labels])
    scores = _scores_of_files(run, folder.files, batch_size, tta)
    return classification_figures(labels, scores.argmax(axis=1), run.class_names,
                                  folder.skipped, scores=scores)


def _evaluate_targets(run, table, batch_size, tta):
    """`evaluate`'s figures for a multi-label or regression run on an `ImageTable`."""
    from transferkit.training.targets import multilabel_metrics, regression_metrics

    if run.task != table.task:
        raise TransferkitError(f"The table holds {_TASK_WORDS[table.task]}; {run.path} "
                               f"predicts {_TASK_WORDS[run.task]}.")
    if run.task == "multilabel" and table.class_names != run.class_names:
        shown = table.class_names[:5] + (["..."] if len(table.class_names) > 5 else [])
        raise TransferkitError(f"The table's {len(table.class_names)} labels {shown} are not "
                               f"the run's {run.class_names}; label it as in training.")
    scores = _scores_of_files(run, table.files, batch_size, tta)
    if run.task == "regression":
        figures = regression_metrics(table.labels, scores.reshape(-1))
    else:
        figures = multilabel_metrics(table.labels, scores, run.thresholds,
                                     label_names=run.class_names)
    return {**figures, "images": len(table), "task": run.task,
            "class_names": list(run.class_names),
            "skipped_files": [str(p) for p, _ in table.skipped]}


def _scores_of_files(run, files, batch_size, tta):
    """The run model's outputs (`class_scores`) on image files, streamed batch by batch."""
    from transferkit.data.stream import ImageFiles, read_ahead

    x = ImageFiles(files, run.image_size, crop=run.crop)
    scores = []
    with Progress(len(x), "Evaluating", unit="images") as progress:
        for _, batch in read_ahead(x, batch_size):
            scores.append(class_scores(run, batch, tta=tta))
            progress.update(len(batch))
    return np.concatenate(scores)


def _target_row(run, p):
    """A multi-label or regression prediction as `predict` returns it."""
    if run.task == "regression":
        return {"value": float(p[0])}
    from transferkit.training.targets import labels_above

    above = labels_above(p[None], run.thresholds, run.class_names)[0]
    return {"labels": [name for name, _ in above], "probabilities": [float(v) for v in p]}


# What a run of each task predicts, for messages.
_TASK_WORDS = {"classes": "classes", "multilabel": "labels", "regression": "numbers"}


def classification_figures(labels, predicted, class_names, skipped=(), noun="images",
                           scores=None):
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix.

    With `scores`, also the figures for skewed classes
    (`transferkit.training.class_weights.imbalance_metrics`): macro-F1,
    balanced accuracy and, for two classes, ROC-AUC, PR-AUC and the
    threshold with the best balanced accuracy.

    Args:
        labels, predicted: class indices into `class_names`.
        class_names: the run's classes.
        skipped: `(path, reason)` pairs of unreadable files (or `(line,
            reason)` of malformed rows), reported back.
        noun: what was classified, the count's key: `"images"` or `"texts"`.
        scores: optional class scores `(n, classes)` that `predicted` came from.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from transferkit.training.class_weights import imbalance_metrics

    indices = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    return {
        "accuracy": float(np.mean(np.asarray(predicted) == np.asarray(labels))),
        noun: int(len(labels)),
        "class_names": list(class_names),
        "classes": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                           "f1": float(f1[i]), "support": int(support[i])}
                    for i, name in enumerate(class_names)},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        **(imbalance_metrics(labels, scores) if scores is not None and len(labels) else {}),
        **({"skipped_rows": [int(line) for line, _ in skipped]} if noun == "texts"
           else {"skipped_files": [str(p) for p, _ in skipped]}),
    }


def _reading(run, columns):
    """`read_text_file` keywords: `columns`', or the run's training columns."""
    from transferkit.training.config import TextColumns

    if columns is None:
        columns = TextColumns(**(run.columns or {}))
    return columns.read_arguments()


def _texts_to_predict(run, files, texts, columns):
    """`[(text, row identity)]` from texts, or from text files' text columns."""
    from transferkit.data.text import read_text_file

    if texts is not None:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TransferkitError("texts must be a list of strings.")
        return [(t, {"text": t}) for t in texts]
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    reading = {**_reading(run, columns), "label": None}
    found = []
    for path in files:
        kind = os.fspath(path).lower().removesuffix(".gz")
        arguments = {"label": None} if kind.endswith(".txt") else reading
        data = read_text_file(path, **arguments)
        found += [(t, {"path": os.fspath(path), "line": line, "text": t})
                  for t, line in zip(data.texts, data.lines)]
    return found


def _evaluate_texts(run, path, batch_size, columns):
    from transferkit.data.stream import read_ahead
    from transferkit.data.text import read_text_file

    data = read_text_file(path, **_reading(run, columns))
    unknown = sorted(set(data.class_names) - set(run.class_names))
    if unknown:
        raise TransferkitError(
            f"{path} has classes the model was not trained on: {unknown}; it knows "
            f"{run.class_names}.")
    labels = np.array([run.class_names.index(data.class_names[i]) for i in data.labels])
    scores = text_scores(run, data.texts, batch_size=batch_size)
    return classification_figures(labels, scores.argmax(axis=1), run.class_names, data.skipped,
                                  noun="texts", scores=scores)



# The layers that Monte Carlo dropout turns on. Dropout covers SpatialDropout1D,
# 2D and 3D (its subclasses). GaussianNoise is left off: it models noisy
# inputs, not an approximate posterior over the weights.
MC_DROPOUT_LAYERS = (keras.layers.Dropout, keras.layers.GaussianDropout,
                     keras.layers.AlphaDropout)


@dataclasses.dataclass
class MCDropoutPrediction:
    """The result of `mc_dropout_predict`: per-sample mean, spread and entropy.

    Attributes:
        mean: float64 array `(n, classes)`, the probabilities averaged over
            the passes (the Monte Carlo estimate of the predictive
            distribution; rows sum to 1).
        std: float64 array `(n, classes)`, each probability's standard
            deviation across the passes (population, `ddof=0`); exactly 0
            for a model without dropout.
        entropy: float64 array `(n,)`, the predictive entropy of `mean`,
            `-sum(p * log(p))` in nats (natural log): 0 for a certain
            prediction, at most `log(classes)` (0.693 for two classes) for a
            uniform one. It counts both the noise in the data and the
            model's doubt.
        mutual_information: float64 array `(n,)`, `entropy` minus the mean
            entropy of the single passes (BALD): the part of the entropy that
            comes from the passes disagreeing, i.e. the model's own
            (epistemic) uncertainty, in nats; 0 without dropout.
        samples: the number of passes T.
        dropout_layers: the qualified names of the layers that were random
            (`"backbone/block2b_drop"` for one inside the backbone).
    """

    mean: np.ndarray
    std: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    samples: int
    dropout_layers: list


def mc_dropout_predict(model, x, samples=30, *, batch_size=32, seed=None):
    """Monte Carlo dropout: the mean and spread of T passes with dropout on.

    Each pass calls `model(x, training=False)` with every dropout layer
    (`Dropout`, `SpatialDropout1D/2D/3D`, `GaussianDropout`, `AlphaDropout`,
    also inside nested models such as the `"backbone"`) forced to draw a
    mask, so everything else stays in inference mode: BatchNormalization
    uses its moving statistics (and does not update them), the `"augment"`
    layers pass images through. (`model(x, training=True)` would instead
    normalize with each batch's statistics and augment the images.) The
    masks differ between passes, and the spread of the T outputs estimates
    the model's uncertainty (Gal & Ghahramani, 2016; seed 003).

    The passes run eagerly on a copy of the model's graph that shares its
    layers and weights, in which each dropout layer is called in training
    mode and draws from a seed generator of its own: the model itself (its
    layers, weights and random states) is not changed. Dropout inside a
    composite layer (a KerasHub `TransformerEncoder`) is on when dropout is
    all that training mode changes in that layer; otherwise it stays off,
    with a warning.

    For a model from `build` whose dropout is all in the head (after the
    backbone), the backbone runs once per input and only the head T times.
    For a binary head (one sigmoid unit, P(class 1)) each pass becomes two
    columns `[1 - p, p]`, as `predict` shows it. A model without dropout
    warns and returns its deterministic prediction with `std` 0.

    Args:
        model: a `keras.Model` with one output of class probabilities
            (softmax rows, or one sigmoid unit).
        x: a NumPy array of inputs (or one `np.asarray` converts), e.g.
            images from `load_images`.
        samples: the number of passes T, an int >= 2. Defaults to 30; the
            Monte Carlo error of `mean` shrinks like `std / sqrt(T)`.
        batch_size: rows per forward pass. Defaults to 32. Fewer inputs
            than that share a call between several passes, side by side
            along the batch axis, each row with its own masks.
        seed: an int for repeatable masks, or `None` (default) for fresh
            ones (drawn from Python's `random`, so
            `keras.utils.set_random_seed` makes them repeatable too).

    Returns:
        An `MCDropoutPrediction`: `mean`, `std`, `entropy`,
        `mutual_information`, `samples`, `dropout_layers`.

    Example:

    >>> model = transferkit.build("efficientnet_lite0", 2, dropout=0.5)  # doctest: +SKIP
    >>> result = mc_dropout_predict(model, images, samples=30, seed=0)  # doctest: +SKIP
    >>> result.mean.argmax(axis=1), result.std.max(axis=1), result.entropy  # doctest: +SKIP
    """
    _check_mc_arguments(samples, batch_size, seed)
    if not isinstance(model, keras.Model):
        raise TransferkitError(f"model must be a keras.Model, got {type(model).__name__}.")
    if len(model.outputs or [None]) != 1:
        raise TransferkitError(
            f"Model {model.name!r} has {len(model.outputs)} outputs; MC dropout needs one "
            "output of class probabilities."
        )
    try:
        count = len(x)
    except TypeError:
        raise TransferkitError(
            f"x must be an array of inputs, got {type(x).__name__}."
        ) from None
    if count == 0:
        raise TransferkitError("x is empty: give at least one input.")
    with _MCDropout(model, seed) as sampler:
        return sampler.predict(x, samples, batch_size)


def _check_mc_arguments(samples, batch_size, seed):
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 2:
        raise TransferkitError(
            f"MC dropout needs samples (mc_samples) to be an int >= 2, like 30; got {samples!r}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise TransferkitError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TransferkitError(f"seed must be an int or None, got {seed!r}.")


class _MCDropout:
    """A context in which `model`'s passes run with its dropout layers on.

    On entry, the graph of the model (or of its head, see `_head_only`) is
    rebuilt with `keras.models.clone_model` around the same layer objects,
    except that each dropout layer is called through a `_DropoutOn` wrapper:
    in training mode whatever mode the pass runs in, drawing from a seed
    generator of the wrapper's own, seeded from `seed`. Nothing of the model
    changes (not its layers' calls, random states or weights), so there is
    nothing to put back on exit but the rebuilt graph to let go of. The passes
    call the rebuilt graph eagerly with `training=False`.

    Dropout inside a composite layer (a KerasHub `TransformerEncoder`,
    `MultiHeadAttention`) cannot be switched on alone: the whole composite is
    called in training mode, when dropout is the only thing in it that
    training mode changes. When something else is (a `BatchNormalization`),
    that composite's dropout stays off, with a warning.
    """

    def __init__(self, model, seed):
        self.model = model
        self.seed = seed
        found, off = {}, {}
        for name, layer, _ in iter_layers(model):
            if _is_mc_dropout(layer):
                found.setdefault(id(layer), (name, layer))  # a shared layer once
        on = _reachable(model, off)
        self.layers = [(name, layer) for key, (name, layer) in found.items() if key in on]
        # A mask shared along the batch axis (`noise_shape=(1, ...)`) would be
        # shared between passes packed side by side.
        self._packable = all(getattr(layer, "noise_shape", None) is None
                             or layer.noise_shape[0] is None for _, layer in self.layers)
        if off:
            names = [name for key, (name, _) in found.items() if key not in on]
            composite, reason = next(iter(off.values()))
            warnings.warn(
                f"MC dropout leaves {', '.join(names)} off: {composite!r} also holds a "
                f"{reason}, which training mode would change.", stacklevel=3)
        elif not self.layers:
            warnings.warn(
                f"Model {model.name!r} has no dropout layer: MC dropout gives its "
                "deterministic prediction, with spread 0.", stacklevel=3)
        self._split = self._head_only() if self.layers else None
        self._runner = None

    def _head_only(self):
        """`(feature extractor, head model)` when all the dropout is in the head.

        For a model from `build` whose dropout layers all follow the
        backbone, the backbone's output is the same in every pass: it runs
        once per input and only the head runs T times.
        """
        from transferkit.training.features import feature_extractor, head_model

        try:
            head = head_model(self.model)
        except TransferkitError:  # not a backbone-and-head model
            return None
        inside = {id(layer) for _, layer, _ in iter_layers(head)}
        if not all(id(layer) in inside for _, layer in self.layers):
            return None
        return feature_extractor(self.model), head

    def __enter__(self):
        seed = random.randrange(2**31) if self.seed is None else int(self.seed)
        seeds = np.random.default_rng(seed).integers(1, 2**31, size=len(self.layers))
        seeds = {id(layer): int(s) for (_, layer), s in zip(self.layers, seeds)}
        model = self.model if self._split is None else self._split[1]
        self._runner = _with_dropout_on(model, seeds) if seeds else model
        return self

    def __exit__(self, *exc):
        self._runner = None
        return False

    def predict(self, x, samples, batch_size):
        x = np.asarray(x)
        passes = samples if self.layers else 1  # without dropout every pass is the same
        means, stds, entropies, informations = [], [], [], []
        for begin in range(0, len(x), batch_size):
            p = self._passes(x[begin:begin + batch_size], passes, batch_size)
            mean = p.mean(axis=0)  # p: (passes, rows, classes)
            entropy = _entropy(mean)
            means.append(mean)
            stds.append(p.std(axis=0))
            entropies.append(entropy)
            informations.append(np.maximum(entropy - _entropy(p).mean(axis=0), 0.0))
        return MCDropoutPrediction(
            mean=np.concatenate(means), std=np.concatenate(stds),
            entropy=np.concatenate(entropies),
            mutual_information=np.concatenate(informations), samples=int(samples),
            dropout_layers=[name for name, _ in self.layers],
        )

    def _passes(self, chunk, passes, batch_size):
        """The probabilities of `passes` passes over `chunk`: `(passes, rows, classes)`."""
        model, rows_per_call = self._runner, batch_size
        if self._split is not None:
            extractor = self._split[0]
            chunk = keras.ops.convert_to_numpy(extractor(chunk, training=False))
            rows_per_call = max(batch_size, _HEAD_ROWS)  # feature vectors are small
        if not self._packable:
            return np.stack([self._pass(model, chunk) for _ in range(passes)])
        # The passes side by side along the batch axis: each row draws its
        # own masks, so a small chunk takes fewer calls (inference-mode layers
        # treat rows independently).
        rows = np.tile(np.arange(len(chunk)), passes)
        p = np.concatenate([self._pass(model, chunk[rows[i:i + rows_per_call]])
                            for i in range(0, len(rows), rows_per_call)])
        return p.reshape(passes, len(chunk), -1)

    def _pass(self, model, batch):
        p = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)),
                       dtype=np.float64)
        if p.ndim != 2:
            raise TransferkitError(
                f"Model {self.model.name!r} outputs shape {p.shape[1:]} per input; MC dropout "
                "needs a vector of class probabilities."
            )
        if p.shape[-1] == 1:  # a binary (sigmoid) head: P(class 1)
            p = np.concatenate([1 - p, p], axis=-1)
        if not (np.all((p >= -1e-6) & (p <= 1 + 1e-6))
                and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3)):
            raise TransferkitError(
                f"Model {self.model.name!r} does not output class probabilities (softmax "
                "rows, or one sigmoid unit); MC dropout averages probabilities."
            )
        return p


_HEAD_ROWS = 4096  # rows per call when only the head runs the passes


class _DropoutOn(keras.layers.Layer):
    """Calls `layer` in training mode, with random states of its own.

    `layer` is a dropout layer, or a composite whose only training-mode
    behaviour is that of the dropout layers inside it. The random states of
    `dropouts` (the variables of a dropout layer, which has no weights, are
    its seed generators' states) are read from and written to this layer's
    own seed generators instead, inside a `keras.StatelessScope`, so `layer`
    itself is not changed by the call.

    Args:
        layer: the layer to call.
        dropouts: `{dropout layer: seed}` for the dropout layers that are
            `layer` or inside it.
    """

    def __init__(self, layer, dropouts, **kwargs):
        super().__init__(name=layer.name, dtype=layer.dtype_policy, **kwargs)
        self.supports_masking = layer.supports_masking
        self.layer = layer
        self.states = []
        self.generators = []
        for dropout, seed in dropouts.items():
            weights = {id(w) for w in dropout.weights}
            states = [v for v in dropout.variables if id(v) not in weights]
            for i, state in enumerate(states):
                self.states.append(state)
                self.generators.append(keras.random.SeedGenerator(seed + i))

    def call(self, *args, training=None, **kwargs):
        mapping = [(state, own.state.value) for state, own in zip(self.states, self.generators)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = self.layer(*args, training=True, **kwargs)
        for state, own in zip(self.states, self.generators):
            own.state.assign(scope.get_current_value(state))
        return outputs


def _is_mc_dropout(layer):
    return isinstance(layer, MC_DROPOUT_LAYERS) and getattr(layer, "rate", 0) > 0


def _is_graph(layer):
    # Models whose graph `clone_model` rebuilds around their own layers.
    return isinstance(layer, keras.Sequential) or is_functional(layer)


def _training_changes(layer):
    """Whether training mode may change what `layer` does, apart from its sublayers.

    Layers that behave differently in training take a `training` argument. A
    composite passes it on to its sublayers, which are looked at in turn;
    `Dense` and `EinsumDense` take it for float8 quantization only.
    """
    if next(iter_layers(layer), None) is not None:
        return False
    if "training" not in inspect.signature(layer.call).parameters:
        return False
    return not (isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))
                and getattr(layer, "quantization_mode", None) is None)


def _reachable(model, off):
    """The ids of the dropout layers of `model` that MC dropout can switch on.

    Fills `off` with `{id(composite): (name, blocking layer type)}` for the
    composites whose dropout must stay off.
    """
    on = set()

    def visit(layer):
        if _is_mc_dropout(layer):
            on.add(id(layer))
        elif _is_graph(layer):
            for child in layer.layers:
                visit(child)
        else:
            inside = [sub for _, sub, _ in iter_layers(layer)]
            dropouts = [sub for sub in inside if _is_mc_dropout(sub)]
            blocking = [sub for sub in inside
                        if not _is_mc_dropout(sub) and _training_changes(sub)]
            if dropouts and blocking:
                off[id(layer)] = (layer.name, type(blocking[0]).__name__)
            elif dropouts:
                on.update(id(sub) for sub in dropouts)

    visit(model)
    return on


def _with_dropout_on(model, seeds):
    """`model` with each reachable dropout layer (a key of `seeds`) called in training mode.

    Graph models are rebuilt around the same layers; a dropout layer, or a
    composite holding some, becomes a `_DropoutOn` wrapper.
    """
    wrappers = {}

    def replacement(layer):
        if not isinstance(layer, keras.layers.Layer):  # an op, such as `ops.zeros_like`
            return layer
        if _is_mc_dropout(layer):
            dropouts = {layer: seeds[id(layer)]} if id(layer) in seeds else {}
        elif _is_graph(layer):
            if not any(id(sub) in seeds for _, sub, _ in iter_layers(layer)):
                return layer
            return keras.models.clone_model(layer, clone_function=replacement)
        else:
            dropouts = {sub: seeds[id(sub)] for _, sub, _ in iter_layers(layer)
                        if id(sub) in seeds}
        if not dropouts:
            return layer
        if id(layer) not in wrappers:  # a shared layer: one wrapper, one random state
            wrappers[id(layer)] = _DropoutOn(layer, dropouts)
        return wrappers[id(layer)]

    if _is_graph(model) and model.compiled:
        # `clone_model` compiles its copy like the model: the passes need no
        # optimizer or loss, which may not even deserialize (a lambda loss).
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.input
        outputs = model.outputs[0] if len(model.outputs) == 1 else model.output
        model = keras.Model(inputs, outputs, name=model.name)
    return replacement(model)


def _entropy(p):
    """`-sum(p * log(p))` over the last axis, in nats, with `0 * log(0) = 0`."""
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(np.where(p > 0, p * np.log(safe), 0.0), axis=-1)


def text_scores(run, texts, *, batch_size=32):
    """`class_scores` of a text run's model on `texts`, tokenized and run by length.

    The texts are tokenized to the run's `max_length`, then run in batches
    of similar lengths, each cut to its longest text
    (`transferkit.data.buckets`): short texts cost little.

    Example:

    >>> text_scores(load_run("runs/reviews"), ["a fine film"])  # doctest: +SKIP
    array([[0.08, 0.92]], dtype=float32)
    """
    from transferkit.training.features import extract_features

    p = extract_features(run.model, run.encode(texts), batch_size=batch_size)
    return _as_class_scores(p)


def class_scores(run, x, *, tta=None):
    """One row of class scores per image of `x`: the run model's outputs, one column a class.

    Probabilities (a one-unit sigmoid output becomes the two columns
    `1 - p, p`), or decision scores for a `linear-svm` run; with `tta`,
    their mean over the first `tta` views of each image (`tta_scores`).
    """
    if tta is not None:
        return tta_scores(lambda view: class_scores(run, view), x, tta)
    p = np.asarray(run.model.predict(x, verbose=0))
    return p if run.task != "classes" else _as_class_scores(p)


def _check_tta(run, tta):
    if tta is not None and run.text:
        raise TransferkitError(f"{run.path} classifies texts; tta (flipped and cropped views) "
                               "is for image runs.")


def _as_class_scores(p):
    if p.shape[-1] == 1:  # a binary (sigmoid) head: P(class 1)
        p = np.concatenate([1 - p, p], axis=-1)
    return p
