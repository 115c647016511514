"""Seed 004 on IMDB: over-fitting and its remedies (Deep Learning with Python, ch. 4).

Five variants of the book's IMDB review classifier, trained on the same data
with the same seed, compared by their validation-loss curves:

    original  Dense(16, relu) - Dense(16, relu) - Dense(1, sigmoid)
    smaller   4 - 4 units
    bigger    512 - 512 units
    l2        original + kernel_regularizer=l2(0.001) on both hidden layers
    dropout   original + Dropout(0.5) after each hidden layer

Data: the 25,000 labelled training reviews of `../shared/data/imdb`, shuffled
once with the seed (the file lists all negative reviews, then all positive
ones; `keras.datasets.imdb` is shuffled too), then split as in the book:
the first 10,000 for validation, the other 15,000 for training. The
vocabulary (`transferkit.data.MultiHot`, the 10,000 most frequent words) is
fit on the 15,000 training reviews only. The test reviews are not used.

Training: RMSprop (learning rate 1e-3, Keras' default), binary cross-entropy,
batch 512, 20 epochs; `keras.utils.set_random_seed(seed)` before each variant,
so that every variant sees the same batches in the same order.

It prints a Markdown table (best epoch by validation loss, i.e. where
over-fitting begins, the minimum and final validation loss, the best
validation accuracy, seconds) and a one-line diagnosis per variant, and writes
`imdb_overfitting.png` (validation loss per epoch of every variant; training
loss beside it) and `imdb_overfitting.json` (the histories) to `--out`.

    .venv/bin/python bench/imdb_overfitting.py [--variants original,l2] [--epochs 20]
        [--seed 0] [--out DIR] [--data ../shared/data/imdb]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
VARIANTS = {
    "original": {"units": 16},
    "smaller": {"units": 4},
    "bigger": {"units": 512},
    "l2": {"units": 16, "l2": 0.001},
    "dropout": {"units": 16, "dropout": 0.5},
}
EPOCHS = 20
BATCH_SIZE = 512
NUM_VAL = 10000
MAX_TOKENS = 10000
# Final validation loss more than this many times the minimum: over-fitting.
_OVERFIT_RATIO = 1.1


def load_data(imdb_dir=IMDB, *, seed=0, num_val=NUM_VAL, max_tokens=MAX_TOKENS):
    """`((x_train, y_train), (x_val, y_val), vectorizer)` from the training reviews."""
    from transferkit.data import MultiHot, read_texts

    texts, labels, _ = read_texts(Path(imdb_dir) / "imdb_train.jsonl.gz")
    order = np.random.default_rng(seed).permutation(len(texts))
    texts = [texts[i] for i in order]
    labels = labels[order].astype("float32")
    vectorizer = MultiHot(max_tokens).fit(texts[num_val:])
    x = vectorizer.transform(texts)
    return (x[num_val:], labels[num_val:]), (x[:num_val], labels[:num_val]), vectorizer


def build_model(variant, input_dim):
    """The book's network for one of `VARIANTS`, compiled."""
    import keras

    spec = VARIANTS[variant]
    penalty = keras.regularizers.L2(spec["l2"]) if "l2" in spec else None
    layers = [keras.Input((input_dim,))]
    for _ in range(2):
        layers.append(keras.layers.Dense(spec["units"], activation="relu",
                                         kernel_regularizer=penalty))
        if "dropout" in spec:
            layers.append(keras.layers.Dropout(spec["dropout"]))
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers, name=variant)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def run_variant(variant, train, val, *, epochs=EPOCHS, seed=0, verbose=0):
    """Trains one variant from `seed`: its history (lists per epoch) and seconds.

    Keras' `val_loss`, like the book's, includes the weight penalty of the l2
    variant; `history["penalty"]` is that penalty at the end of each epoch
    (0 for the other variants), so `val_loss - penalty` is the plain
    cross-entropy.
    """
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = build_model(variant, train[0].shape[1])
    penalties = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: penalties.append(
        float(sum(keras.ops.convert_to_numpy(p) for p in model.losses))))
    start = time.perf_counter()
    history = model.fit(*train, validation_data=val, epochs=epochs,
                        batch_size=BATCH_SIZE, verbose=verbose, callbacks=[record])
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in values] for k, values in history.history.items()}
    return {**history, "penalty": penalties}, seconds


def summarize(history):
    """The figures of the table, from one history."""
    val_loss = np.array(history["val_loss"])
    val_accuracy = np.array(history["val_accuracy"])
    best = int(np.argmin(val_loss))
    return {
        "best_epoch": best + 1,
        "min_val_loss": float(val_loss[best]),
        "final_val_loss": float(val_loss[-1]),
        "best_val_accuracy": float(val_accuracy.max()),
        "best_val_accuracy_epoch": int(np.argmax(val_accuracy)) + 1,
        "final_val_accuracy": float(val_accuracy[-1]),
        "final_loss": float(history["loss"][-1]),
        "final_penalty": float(history["penalty"][-1]),
    }


def diagnose(variant, summary, epochs):
    """One sentence on when and how much the variant overfits."""
    ratio = summary["final_val_loss"] / summary["min_val_loss"]
    start = (f"{variant}: validation loss is lowest at epoch {summary['best_epoch']} "
             f"({summary['min_val_loss']:.3f})")
    penalty = summary["final_penalty"]
    penalty = f", of which {penalty:.3f} is the weight penalty" if penalty else ""
    if ratio > _OVERFIT_RATIO:
        return (f"{start} and ends {ratio:.1f}x higher ({summary['final_val_loss']:.3f}"
                f"{penalty}): it overfits from epoch {summary['best_epoch'] + 1}.")
    return (f"{start} and ends at {summary['final_val_loss']:.3f}{penalty}: no clear "
            f"over-fitting in {epochs} epochs.")


def table(results):
    """A Markdown table of `{variant: (summary, seconds)}`."""
    lines = [
        "| variant | best epoch (val loss min; overfits after) | min val loss "
        "| final val loss | final / min | best val accuracy (epoch) | final train loss | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, (s, seconds) in results.items():
        lines.append(
            f"| {variant} | {s['best_epoch']} | {s['min_val_loss']:.4f} "
            f"| {s['final_val_loss']:.4f} | {s['final_val_loss'] / s['min_val_loss']:.2f} "
            f"| {s['best_val_accuracy']:.4f} ({s['best_val_accuracy_epoch']}) "
            f"| {s['final_loss']:.4f} | {seconds:.1f} |"
        )
    return "\n".join(lines)


def plot(histories, path):
    """Validation loss per epoch of every variant; training loss beside it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    panels = [("val_loss", "validation loss"), ("loss", "training loss")]
    for index, (key, label) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        for variant, history in histories.items():
            values = history[key]
            epochs = np.arange(1, len(values) + 1)
            (line,) = axes.plot(epochs, values, marker="o", markersize=3, label=variant)
            if key == "val_loss":
                best = int(np.argmin(values))
                axes.plot(epochs[best], values[best], "o", markersize=9,
                          markerfacecolor="none", color=line.get_color())
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.set_xticks(np.arange(2, len(values) + 1, 2))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle("IMDB, 10,000-word multi-hot, 15,000 train / 10,000 validation reviews "
                    "(circles: lowest validation loss)")
    figure.savefig(os.fspath(path), dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=IMDB,
                        help="the folder with imdb_train.jsonl.gz (default: %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the figure and histories (default: a new temp folder)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"unknown variant(s) {unknown}; use some of {', '.join(VARIANTS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="imdb_overfitting_"))
    out.mkdir(parents=True, exist_ok=True)

    wall = time.perf_counter()
    start = time.perf_counter()
    train, val, vectorizer = load_data(args.data, seed=args.seed)
    load_seconds = time.perf_counter() - start
    print(f"read, shuffled (seed {args.seed}) and vectorized in {load_seconds:.1f} s: "
          f"train {train[0].shape}, val {val[0].shape}, {train[0].dtype}; "
          f"val positives {val[1].mean():.3f}; top words {vectorizer.vocabulary_[:8]}",
          flush=True)

    histories, results = {}, {}
    for variant in variants:
        print(f"--- {variant} ---", flush=True)
        history, seconds = run_variant(variant, train, val, epochs=args.epochs,
                                       seed=args.seed, verbose=0 if args.quiet else 2)
        histories[variant] = history
        results[variant] = (summarize(history), seconds)
        print(diagnose(variant, results[variant][0], args.epochs), flush=True)
    wall = time.perf_counter() - wall

    print()
    print(table(results))
    print()
    for variant, (summary, _) in results.items():
        print("- " + diagnose(variant, summary, args.epochs))
    figure = out / "imdb_overfitting.png"
    plot(histories, figure)
    with open(out / "imdb_overfitting.json", "w") as f:
        json.dump({"seed": args.seed, "epochs": args.epochs, "load_seconds": load_seconds,
                   "wall_seconds": wall, "histories": histories,
                   "summaries": {v: {**s, "seconds": t} for v, (s, t) in results.items()}},
                  f, indent=1)
    print(f"\nwall time {wall:.0f} s (data {load_seconds:.0f} s); figure: {figure}")


if __name__ == "__main__":
    main()
