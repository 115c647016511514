"""Seed 003's transfer experiment on scikit-learn's digits: does model A help task B?

Model A learns 8 of the 10 digit classes. Task B tells the two other digits
apart with only 200 labelled images. B is trained twice with the same
architecture and the same number of epochs: from scratch, and on A's hidden
layers (cloned, so A is untouched): head first with A frozen, then all
layers with a 10x lower learning rate. Digits stand in for Fashion-MNIST:
they ship with scikit-learn, so the demo needs no download.
"""

import os
import time

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.evaluation.plots import plot_history
from transferkit.training.recipe import FineTuner, Phase, default_recipe
from transferkit.outputs import output_folder
from transferkit.runs import write_json
from transferkit.models.transfer import reuse

DEFAULT_CLASSES = (5, 9)


def transfer_demo(out=None, *, classes=DEFAULT_CLASSES, train_size=200, epochs=(10, 20),
                  learning_rate=1e-2, seed=0, overwrite=False, echo=print):
    """Runs the experiment and (optionally) writes a run folder.

    Args:
        out: run folder to write (models, histories, curves, metrics), or
            `None` to write nothing.
        classes: the two digits of task B; A learns the other eight.
            Defaults to `(5, 9)`.
        train_size: B's training images. Defaults to `200` (seed 003).
        epochs: `(frozen, unfrozen)` epochs for B on A; B from scratch trains
            for their sum. Defaults to `(10, 20)`.
        learning_rate: the head phase's rate (and the from-scratch rate);
            fine-tuning uses a tenth of it. Defaults to `1e-2`.
        seed: seeds the split and the initializations. Defaults to `0`.
        overwrite: replace `out` if it is a previous demo run or an empty
            folder. Defaults to `False`.
        echo: where the report lines go. Defaults to `print`.

    Returns:
        A dict of the figures: A's test accuracy, and B's test loss and
        accuracy from scratch and on A.

    Example:

    >>> results = transfer_demo(out=None, echo=lambda line: None)  # doctest: +SKIP
    >>> results["on_a"]["accuracy"] >= results["scratch"]["accuracy"]  # doctest: +SKIP
    """
    classes = tuple(int(c) for c in classes)
    if len(classes) != 2 or len(set(classes)) != 2 or not all(0 <= c <= 9 for c in classes):
        raise TransferkitError(f"classes must be two different digits 0-9, got {classes}.")
    with output_folder(out, "demo", overwrite=overwrite) as tmp:
        results = _experiment(tmp, classes, train_size, epochs, learning_rate, seed, echo)
    if out is not None:
        echo(f"Wrote {out} (models, histories, curves, metrics) in "
             f"{results['seconds']:.1f} s.")
    return results


def _experiment(tmp, classes, train_size, epochs, learning_rate, seed, echo):
    """Runs the experiment; writes its run folder into `tmp` unless `None`."""
    from sklearn.datasets import load_digits

    start = time.perf_counter()
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    rng = np.random.default_rng(seed)
    in_b = np.isin(y, classes)
    a_idx, b_idx = rng.permutation(np.flatnonzero(~in_b)), rng.permutation(np.flatnonzero(in_b))
    if not 10 <= train_size <= len(b_idx) - 100:
        raise TransferkitError(
            f"train_size must be between 10 and {len(b_idx) - 100} (task B has "
            f"{len(b_idx)} images; 50 are kept for validation and 50 or more for "
            f"testing); got {train_size}."
        )
    a_classes = [c for c in range(10) if c not in classes]
    x_a, y_a = x[a_idx], np.searchsorted(a_classes, y[a_idx])
    n_test_a = len(a_idx) // 5
    x_b, y_b = x[b_idx], (y[b_idx] == classes[1]).astype("int64")
    x_b_train, y_b_train = x_b[:train_size], y_b[:train_size]
    # Validation images pick the best epoch; the test images are used only once.
    val = slice(train_size, train_size + 50)
    x_b_val, y_b_val = x_b[val], y_b[val]
    x_b_test, y_b_test = x_b[train_size + 50:], y_b[train_size + 50:]

    echo(f"Task A: digits {a_classes} ({len(a_idx) - n_test_a} training images). "
         f"Task B: {classes[0]} vs {classes[1]}, {train_size} training and "
         f"{len(x_b_val)} validation, {len(x_b_test)} test images.")
    keras.utils.set_random_seed(seed)
    model_a = _model_a(len(a_classes))
    model_a.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    history_a = model_a.fit(x_a[n_test_a:], y_a[n_test_a:], epochs=20, batch_size=32,
                            validation_data=(x_a[:n_test_a], y_a[:n_test_a]), verbose=0)
    accuracy_a = float(model_a.evaluate(x_a[:n_test_a], y_a[:n_test_a], verbose=0)[1])
    echo(f"Model A: test accuracy {accuracy_a:.4f} on its 8 classes.")
    weights_a = [w.copy() for w in model_a.get_weights()]

    runs = {}
    for variant in ("scratch", "on_a"):
        model_b = reuse(model_a, 2, output="binary", from_scratch=variant == "scratch",
                        name=f"model_b_{variant}")
        if variant == "scratch":
            phases = [Phase(sum(epochs), learning_rate, "all", name="scratch")]
        else:
            phases = default_recipe(epochs, learning_rate)
        tuner = FineTuner(phases, patience=None, seed=seed, verbose=0)
        tuner.fit(model_b, x_b_train, y_b_train, validation_data=(x_b_val, y_b_val))
        loss, accuracy = model_b.evaluate(x_b_test, y_b_test, verbose=0)
        runs[variant] = {"model": model_b, "tuner": tuner,
                         "loss": float(loss), "accuracy": float(accuracy)}
    if not all(np.array_equal(w, v) for w, v in zip(weights_a, model_a.get_weights())):
        raise AssertionError("Training B changed model A's weights.")  # reuse must clone

    echo(f"Model B from scratch: test accuracy {runs['scratch']['accuracy']:.4f}, "
         f"loss {runs['scratch']['loss']:.4f}")
    echo(f"Model B on A:         test accuracy {runs['on_a']['accuracy']:.4f}, "
         f"loss {runs['on_a']['loss']:.4f}")
    errors = [1 - runs[v]["accuracy"] for v in ("scratch", "on_a")]
    if errors[0] > 0:
        echo(f"Test error: {errors[0]:.2%} from scratch, {errors[1]:.2%} on A. Digits are easy: small dense networks gain little from transfer, and the "
             "gain varies with the pair of classes and the seed (try --classes 3,8).")
    echo("Model A's weights are unchanged after training B (its layers were cloned).")

    results = {
        "classes": list(classes), "train_size": train_size, "a_test_accuracy": accuracy_a,
        "scratch": {k: runs["scratch"][k] for k in ("loss", "accuracy")},
        "on_a": {k: runs["on_a"][k] for k in ("loss", "accuracy")},
        "seconds": time.perf_counter() - start,
    }
    if tmp is not None:
        model_a.save(os.path.join(tmp, "model_a.keras"))
        write_json(os.path.join(tmp, "history_a.json"), history_a.history)
        plot_history(history_a.history, os.path.join(tmp, "curves_a.png"),
                     title=f"Model A: digits {a_classes}")
        for variant, run in runs.items():
            run["model"].save(os.path.join(tmp, f"model_b_{variant}.keras"))
            write_json(os.path.join(tmp, f"history_b_{variant}.json"),
                       {"history": run["tuner"].history_, "phases": run["tuner"].phases_})
            plot_history(run["tuner"].history_,
                         os.path.join(tmp, f"curves_b_{variant}.png"),
                         phases=run["tuner"].phases_,
                         title=_TITLES[variant])
        write_json(os.path.join(tmp, "metrics.json"), results)
        write_json(os.path.join(tmp, "config.json"), {
            "command": "demo", "classes": list(classes), "train_size": train_size,
            "epochs": list(epochs), "learning_rate": learning_rate, "seed": seed,
            "keras_backend": keras.backend.backend(), "keras_version": keras.__version__,
        })
    return results


class DigitsTasks:
    """Task A's and task B's images for one seed (see `digits_tasks`)."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


def digits_tasks(classes=DEFAULT_CLASSES, seed=0, train_size=200, val_size=50):
    """Splits scikit-learn's digits into task A (8 digits) and task B (`classes`).

    Args:
        classes: task B's two digits. Defaults to `(5, 9)`.
        seed: seeds the shuffles. Defaults to `0`.
        train_size: the most B training images any run takes (runs take the
            first `n`). Defaults to `200`.
        val_size: B's validation images. Defaults to `50`.

    Returns:
        A `DigitsTasks` with `a_classes`, `a_train`, `a_test`, `b_train`,
        `b_val`, `b_test` (each an `(x, y)` pair; B's labels are 1 for
        `classes[1]`). B's test images are the same for every `n`.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    rng = np.random.default_rng(seed)
    in_b = np.isin(y, classes)
    a_idx, b_idx = rng.permutation(np.flatnonzero(~in_b)), rng.permutation(np.flatnonzero(in_b))
    a_classes = [c for c in range(10) if c not in classes]
    x_a, y_a = x[a_idx], np.searchsorted(a_classes, y[a_idx])
    n_test_a = len(a_idx) // 5
    x_b, y_b = x[b_idx], (y[b_idx] == classes[1]).astype("int64")
    val = slice(train_size, train_size + val_size)
    return DigitsTasks(
        classes=tuple(classes), a_classes=a_classes,
        a_train=(x_a[n_test_a:], y_a[n_test_a:]), a_test=(x_a[:n_test_a], y_a[:n_test_a]),
        b_train=(x_b[:train_size], y_b[:train_size]), b_val=(x_b[val], y_b[val]),
        b_test=(x_b[train_size + val_size:], y_b[train_size + val_size:]),
    )


def train_model_a(tasks, seed=0):
    """Trains model A on task A; returns `(model, test accuracy, history)`."""
    keras.utils.set_random_seed(seed)
    model_a = _model_a(len(tasks.a_classes))
    model_a.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    history = model_a.fit(*tasks.a_train, epochs=20, batch_size=32,
                          validation_data=tasks.a_test, verbose=0)
    accuracy = float(model_a.evaluate(*tasks.a_test, verbose=0)[1])
    return model_a, accuracy, history


_TITLES = {"scratch": "Model B from scratch", "on_a": "Model B on model A"}


def _model_a(num_classes):
    # Seed 003's source model, scaled to 8x8 digits: three dense hidden layers.
    dense = [keras.layers.Dense(100, activation="relu", name=f"hidden{i}") for i in (1, 2, 3)]
    return keras.Sequential(
        [keras.Input((64,), name="pixels"), *dense,
         keras.layers.Dense(num_classes, activation="softmax", name="output")],
        name="model_a",
    )
