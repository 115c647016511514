"""Seed 003's transfer experiment on scikit-learn's digits: does model A help task B?

Model A learns 8 of the 10 digit classes. Task B tells the two other digits
apart from a few labelled images (20, 50, 200 by default). For each seed and
each size, B is trained twice with the same architecture, the same
initialization of the shared head, and the same number of epochs: from
scratch, and on A's hidden layers (cloned, so A is untouched): head first
with A frozen, then all layers with a 10x lower learning rate. The table of
mean +- std test accuracies over the seeds shows where the transfer pays.
Digits stand in for Fashion-MNIST: they ship with scikit-learn, so the demo
needs no download.
"""

import dataclasses
import numbers
import os
import time

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.evaluation.plots import plot_history
from transferkit.models.transfer import reuse
from transferkit.outputs import output_folder
from transferkit.runs import write_json
from transferkit.training.recipe import FineTuner, Phase, default_recipe

DEFAULT_CLASSES = (5, 9)
DEFAULT_SIZES = (20, 50, 200)
VARIANTS = ("scratch", "on_a")
_HELD_OUT = 100  # B's validation (50) and its fewest test images (50)


def transfer_demo(out=None, *, classes=DEFAULT_CLASSES, sizes=DEFAULT_SIZES, seeds=3,
                  train_size=None, epochs=(10, 20), learning_rate=1e-2, seed=0,
                  overwrite=False, echo=print):
    """Runs the experiment over seeds and B sizes and (optionally) writes a run folder.

    Args:
        out: run folder to write, or `None` to write nothing. It receives, for
            the first seed and the largest size, model A, both B models,
            their histories and curves; `metrics.json` holds those figures
            and the whole table.
        classes: the two digits of task B; A learns the other eight.
            Defaults to `(5, 9)`.
        sizes: B's training-set sizes, each from 10 up to the number of B
            images less 100 (50 validation, 50 or more test). Defaults to
            `(20, 50, 200)` (200 is seed 003's).
        seeds: how many seeds, `seed`, `seed + 1`, ... Each seed splits the
            data, trains A once, and trains B at every size. Defaults to `3`.
        train_size: one size instead of `sizes` (the former argument).
            Defaults to `None`.
        epochs: `(frozen, unfrozen)` epochs for B on A; B from scratch trains
            for their sum. Defaults to `(10, 20)`.
        learning_rate: the head phase's rate (and the from-scratch rate);
            fine-tuning uses a tenth of it. Defaults to `1e-2`.
        seed: the first seed. Defaults to `0`.
        overwrite: replace `out` if it is a previous demo run or an empty
            folder. Defaults to `False`.
        echo: where the report lines go. Defaults to `print`.

    Returns:
        A dict: `table` (one row per size: the size, each variant's mean,
        std and per-seed test accuracies, and the mean gain on A), `seeds`,
        and for the first seed at the largest size A's test accuracy and B's
        test loss and accuracy from scratch and on A (`scratch`, `on_a`).

    Example:

    >>> results = transfer_demo(None, sizes=(20, 200), seeds=2,
    ...                         echo=lambda line: None)  # doctest: +SKIP
    >>> [row["train_size"] for row in results["table"]]  # doctest: +SKIP
    [20, 200]
    """
    classes = tuple(int(c) for c in classes)
    if len(classes) != 2 or len(set(classes)) != 2 or not all(0 <= c <= 9 for c in classes):
        raise TransferkitError(f"classes must be two different digits 0-9, got {classes}.")
    sizes = _checked_sizes((train_size,) if train_size is not None else sizes, classes)
    if isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral) or not 1 <= seeds <= 20:
        raise TransferkitError(f"seeds must be an int from 1 to 20, got {seeds!r}.")
    with output_folder(out, "demo", overwrite=overwrite) as tmp:
        results = _experiment(tmp, classes, sizes, range(seed, seed + seeds), epochs,
                              learning_rate, echo)
    if out is not None:
        echo(f"Wrote {out} (models, histories and curves of seed {seed} at "
             f"{sizes[-1]} images; metrics.json with the table) in "
             f"{results['seconds']:.1f} s.")
    return results


def _checked_sizes(sizes, classes):
    """`sizes` as a sorted tuple of distinct ints, or a one-line error."""
    from sklearn.datasets import load_digits

    b_images = int(np.isin(load_digits().target, classes).sum())
    most = b_images - _HELD_OUT
    try:
        given = list(sizes)
    except TypeError:
        given = [sizes]
    if not given or any(isinstance(n, bool) or not isinstance(n, numbers.Integral)
                        or not 10 <= n <= most for n in given):
        raise TransferkitError(
            f"train sizes must be ints from 10 to {most} (task B has {b_images} images; "
            f"50 are kept for validation and 50 or more for testing); got {sizes!r}."
        )
    return tuple(sorted({int(n) for n in given}))


def _experiment(tmp, classes, sizes, seeds, epochs, learning_rate, echo):
    """Runs every seed and size; writes the run folder into `tmp` unless `None`."""
    start = time.perf_counter()
    accuracies = {(n, v): [] for n in sizes for v in VARIANTS}
    kept = None
    for seed in seeds:
        tasks = digits_tasks(classes, seed, max(sizes))
        if seed == seeds[0]:
            echo(f"Task A: digits {tasks.a_classes} ({len(tasks.a_train[1])} training "
                 f"images). Task B: {classes[0]} vs {classes[1]}, "
                 f"{', '.join(map(str, sizes))} training images, {len(tasks.b_val[1])} "
                 f"validation and {len(tasks.b_test[1])} test images; seeds "
                 f"{', '.join(map(str, seeds))}.")
        model_a, accuracy_a, history_a = train_model_a(tasks, seed)
        weights_a = [w.copy() for w in model_a.get_weights()]
        line = []
        for n in sizes:
            runs = {v: train_b(model_a, tasks, n, v, epochs=epochs,
                               learning_rate=learning_rate, seed=seed) for v in VARIANTS}
            for v in VARIANTS:
                accuracies[n, v].append(runs[v]["accuracy"])
            line.append(f"n={n} {runs['scratch']['accuracy']:.3f} / {runs['on_a']['accuracy']:.3f}")
            if seed == seeds[0] and n == sizes[-1]:
                kept = {"model_a": model_a, "accuracy_a": accuracy_a, "history_a": history_a,
                        "runs": runs, "seed": seed, "tasks": tasks}
        if not all(np.array_equal(w, v) for w, v in zip(weights_a, model_a.get_weights())):
            raise AssertionError("Training B changed model A's weights.")  # reuse must clone
        echo(f"Seed {seed}: model A {accuracy_a:.4f} on its 8 classes; B from scratch / "
             f"on A: {', '.join(line)}.")
    table = [table_row(n, accuracies[n, "scratch"], accuracies[n, "on_a"]) for n in sizes]
    for line in table_lines(table) + verdict_lines(table, len(seeds)):
        echo(line)
    echo("Model A's weights are unchanged after training B (its layers were cloned).")

    runs = kept["runs"]
    results = {
        "classes": list(classes), "seeds": list(seeds), "sizes": list(sizes), "table": table,
        "train_size": sizes[-1], "seed": kept["seed"], "a_test_accuracy": kept["accuracy_a"],
        "scratch": {k: runs["scratch"][k] for k in ("loss", "accuracy")},
        "on_a": {k: runs["on_a"][k] for k in ("loss", "accuracy")},
        "seconds": time.perf_counter() - start,
    }
    if tmp is not None:
        _write_run(tmp, kept, results, epochs, learning_rate)
    return results


def train_b(model_a, tasks, train_size, variant, *, epochs=(10, 20), learning_rate=1e-2,
            seed=0):
    """Trains task B on its first `train_size` images, `"scratch"` or `"on_a"`.

    Both variants start from the same seeded state, so their shared head
    starts alike and the from-scratch layers do not depend on what ran before.

    Returns:
        A dict: `model`, `tuner` (the fitted `FineTuner`), and the test
        `loss` and `accuracy`.
    """
    keras.utils.set_random_seed(seed)
    model_b = reuse(model_a, 2, output="binary", from_scratch=variant == "scratch",
                    name=f"model_b_{variant}")
    if variant == "scratch":
        phases = [Phase(sum(epochs), learning_rate, "all", name="scratch")]
    else:
        phases = default_recipe(epochs, learning_rate)
    tuner = FineTuner(phases, patience=None, seed=seed, verbose=0)
    x, y = tasks.b_train[0][:train_size], tasks.b_train[1][:train_size]
    tuner.fit(model_b, x, y, validation_data=tasks.b_val)
    loss, accuracy = model_b.evaluate(*tasks.b_test, verbose=0)
    return {"model": model_b, "tuner": tuner, "loss": float(loss), "accuracy": float(accuracy)}


def table_row(n, scratch, on_a):
    """One row of the table: a size and both variants' accuracies over the seeds."""
    def summary(values):
        return {"mean": float(np.mean(values)), "std": float(np.std(values)),
                "accuracies": [float(v) for v in values]}

    return {"train_size": n, "scratch": summary(scratch), "on_a": summary(on_a),
            "gain": float(np.mean(np.subtract(on_a, scratch))),
            "on_a_better": int(np.sum(np.greater(on_a, scratch))),
            "on_a_worse": int(np.sum(np.less(on_a, scratch)))}


def table_lines(table):
    """The table as aligned text lines: size, both variants' mean ± std, the gain."""
    lines = ["Model B's test accuracy, mean ± std over the seeds:",
             (f"  {'n':>4}  {'from scratch':>16}  {'on A':>16}  {'on A - scratch':>14}  "
              "seeds better/worse on A")]
    for row in table:
        cells = [f"{row[v]['mean']:.4f} ± {row[v]['std']:.4f}" for v in VARIANTS]
        lines.append(f"  {row['train_size']:>4}  {cells[0]:>16}  {cells[1]:>16}  "
                     f"{row['gain']:>+14.4f}  {row['on_a_better']}/{row['on_a_worse']}")
    return lines


def verdict_lines(table, seeds):
    """What the table says: at which sizes reuse paid, and if none, why not."""
    # A size counts only when A wins on average and in most seeds: one seed's
    # test image or two is noise.
    paid = [row["train_size"] for row in table
            if row["gain"] > 0 and row["on_a_better"] > seeds / 2]
    lost = [row["train_size"] for row in table
            if row["gain"] < 0 and row["on_a_worse"] > seeds / 2]
    lines = []
    if seeds < 3:
        lines.append(f"With {seeds} seed{'s' if seeds > 1 else ''}, a test image or two "
                     "either way is noise: --seeds 5 tells more.")
    if paid:
        lines.append(f"Reuse pays at n = {', '.join(map(str, paid))}.")
    if lost:
        lines.append(f"Reuse costs accuracy at n = {', '.join(map(str, lost))}.")
    if not paid:
        lines.append(
            "Reuse does not pay on digits: A's top layers, trained to tell its 8 digits "
            "apart, separate B's two less well than the raw pixels do (a linear probe, "
            "bench/transfer_digits.py --probe), and 8x8 digits are easy to learn from "
            "scratch. Transfer pays where the features carry over: real photos, "
            "bench/README.md."
        )
    return lines


def _write_run(tmp, kept, results, epochs, learning_rate):
    """Model A, both B models, their histories and curves (one seed, one size), the table."""
    model_a = kept["model_a"]
    model_a.save(os.path.join(tmp, "model_a.keras"))
    write_json(os.path.join(tmp, "history_a.json"), kept["history_a"].history)
    plot_history(kept["history_a"].history, os.path.join(tmp, "curves_a.png"),
                 title=f"Model A: digits {kept['tasks'].a_classes}")
    for variant, run in kept["runs"].items():
        run["model"].save(os.path.join(tmp, f"model_b_{variant}.keras"))
        write_json(os.path.join(tmp, f"history_b_{variant}.json"),
                   {"history": run["tuner"].history_, "phases": run["tuner"].phases_})
        plot_history(run["tuner"].history_, os.path.join(tmp, f"curves_b_{variant}.png"),
                     phases=run["tuner"].phases_, title=_TITLES[variant])
    write_json(os.path.join(tmp, "metrics.json"), results)
    write_json(os.path.join(tmp, "config.json"), {
        "command": "demo", "classes": results["classes"], "sizes": results["sizes"],
        "seeds": results["seeds"], "train_size": results["train_size"],
        "epochs": list(epochs), "learning_rate": learning_rate, "seed": results["seeds"][0],
        "keras_backend": keras.backend.backend(), "keras_version": keras.__version__,
    })


@dataclasses.dataclass(frozen=True)
class DigitsTasks:
    """Task A's and task B's images for one seed (see `digits_tasks`); `(x, y)` pairs."""

    classes: tuple
    a_classes: list
    a_train: tuple
    a_test: tuple
    b_train: tuple
    b_val: tuple
    b_test: tuple


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
