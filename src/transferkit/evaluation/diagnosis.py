"""Read a training history: best epoch, over-fitting onset, gap, verdict, advice.

Seed 004 (Chollet's IMDB experiment): at first the training and validation
losses fall together and the model under-fits; after a few epochs the
validation loss stops improving and then rises while the training loss keeps
falling: the model over-fits, learning patterns of the training data that do
not generalize. `diagnose` locates those points in a history (a Keras
`History`, `FineTuner.history_`, or a run folder's `history.json`), says which
regime the run ended in, and lists what to try next, mapped to `transferkit
train` options: seed 004's remedies (more data, a smaller network, L2 weight
regularization, dropout, early stopping) and seed 001's for fine-tuning (a
learning rate about 10x lower, freezing more of the backbone, a linear
classifier under ~1,000 images, cross-validation).

Pure Python on per-epoch lists: no Keras, no NumPy needed.

Example:

>>> history = {"loss": [0.9, 0.6, 0.45, 0.35, 0.27, 0.2, 0.14],
...            "val_loss": [0.95, 0.7, 0.55, 0.5, 0.56, 0.63, 0.72]}
>>> d = diagnose(history)
>>> d.verdict, d.best_epoch, d.overfitting_onset
('over-fitting', 4, 4)
"""

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping

from transferkit.errors import TransferkitError

VERDICTS = ("diverged", "over-fitting", "under-fitting", "inconclusive", "good fit")

# The thresholds behind the verdicts (see `diagnose`).
WORSE = 0.05  # the last epoch's monitored value this far (relative) from the best: notably worse
IMPROVING = 0.02  # still falling by more than this (relative) per epoch: markedly
BASELINE = 0.75  # a training loss above this fraction of ln(num_classes): barely fit

# Training-accuracy keys Keras logs, in the order they are looked for.
_ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy",
                  "binary_accuracy")

_ADVICE = {
    "diverged": [
        "Lower the learning rate, e.g. 10x (`--lr`), or find one with `transferkit lr-find`.",
        "Clip the gradients: `--optimizer adam:clipnorm=1`.",
        "Check the inputs and labels for NaN or out-of-range values.",
    ],
    "over-fitting": [
        "Get more training data, or augment it: `--augment default`, or e.g. "
        "`--augment flip=horizontal,rotate=0.1,zoom=0.2`.",
        "Fine-tune a smaller part of the network: freeze more of the backbone with "
        "`--unfreeze blocks:1` (or `last:N`).",
        "Lower the fine-tuning learning rate, e.g. `--lr 1e-3,1e-5` (about 10x below the "
        "head's, or lower).",
        "Add L2 weight regularization: `--kernel l2:1e-4`.",
        "Add dropout: `--dropout 0.5` before the head, `--dropout-after blocks` inside the "
        "backbone.",
        "Stop earlier: a smaller early-stopping `--patience` (transferkit keeps the best "
        "epoch's weights).",
        "With under ~1,000 images: a linear classifier on the frozen features, "
        "`--head logreg`.",
    ],
    "under-fitting": [
        "Train longer: more `--epochs` (e.g. 10,30), and a larger `--patience`.",
        "Try a higher learning rate: `transferkit lr-find DATA_DIR --backbone NAME`, then "
        "`--lr`.",
        "Fine-tune more of the backbone: `--unfreeze all`, or a larger `blocks:N`.",
        "Regularize less: a smaller `--kernel` penalty, `--dropout`, `--dropout-after-rate`, "
        "or lighter `--augment`.",
    ],
    "good fit": [
        "Keep these settings.",
        "Check that the figures hold across splits: `transferkit cv DATA_DIR --backbone NAME`.",
    ],
}
_LOWER_RATE = ("Lower the learning rate (`--lr`, or find one with `transferkit lr-find`), or "
               "decay it (`--schedule cosine`).")
_MORE_VALIDATION = ("Use a larger validation set (`--val-split 0.3`) or cross-validate "
                    "(`transferkit cv`) to tell noise from a trend.")


@dataclasses.dataclass
class Diagnosis:
    """What a training history says: see `diagnose` for the definitions.

    Epochs are 1-based, as Keras prints them.

    Attributes:
        verdict: one of `VERDICTS`: `"diverged"`, `"over-fitting"`,
            `"under-fitting"`, `"inconclusive"` or `"good fit"`.
        reasons: the figures behind the verdict, as sentences.
        advice: what to try next, as sentences naming `transferkit` options.
        best_epoch: the epoch with the best `monitor` (first on ties), or
            `None` if no epoch has a finite value (a run that diverged).
        best: `monitor`, `val_loss`, the validation accuracy, `loss` and the
            training accuracy at `best_epoch` (those the history has; `None`
            where that epoch did not log one).
        overfitting_onset: the epoch over-fitting started from, or `None`.
        generalization_gap: `{"best": {...}, "final": {...}}`: at the best and
            the final epoch, its `epoch`, `loss` (val_loss - loss) and
            `accuracy` (validation minus training accuracy), each where the
            history has both values.
        final_epoch: the last epoch with a finite `monitor` and training loss.
        epochs: the number of epochs in the history.
        diverged_epoch: the first epoch with a training loss or `monitor` that
            is not finite, or `None`.
        monitor, patience, min_delta: the settings used.

    Example:

    >>> d = diagnose({"loss": [0.7, 0.5, 0.4], "val_loss": [0.7, 0.55, 0.5]})
    >>> d.to_dict()["best_epoch"]
    3
    """

    verdict: str
    reasons: list
    advice: list
    best_epoch: int | None
    best: dict
    overfitting_onset: int | None
    generalization_gap: dict
    final_epoch: int | None
    epochs: int
    diverged_epoch: int | None
    monitor: str
    patience: int
    min_delta: float

    def to_dict(self):
        """The diagnosis as a dict of JSON types (no NaN); `Diagnosis(**d)` rebuilds it.

        Example:

        >>> import json
        >>> d = diagnose({"loss": [0.7, 0.5], "val_loss": [0.7, 0.6]})
        >>> Diagnosis(**json.loads(json.dumps(d.to_dict()))) == d
        True
        """
        return dataclasses.asdict(self)

    def summary(self):
        """The diagnosis in plain English, a few lines.

        Example:

        >>> print(diagnose({"loss": [0.7, 0.5], "val_loss": [0.7, 0.6]}).summary())
        ... # doctest: +ELLIPSIS
        Verdict: under-fitting
        Best epoch: 2 of 2 (val_loss 0.6, loss 0.5)
        ...
        """
        lines = [f"Verdict: {self.verdict}"]
        if self.best_epoch is None:
            lines.append(f"Best epoch: none ({self.monitor} is never finite)")
        else:
            figures = ", ".join(f"{k} {_number(v)}" for k, v in self.best.items() if v is not None)
            lines.append(f"Best epoch: {self.best_epoch} of {self.epochs} ({figures})")
        if self.overfitting_onset is not None:
            lines.append(f"Over-fitting onset: epoch {self.overfitting_onset}")
        else:
            lines.append(f"Over-fitting onset: not observed within {_epochs(self.epochs)} "
                         f"(patience {self.patience})")
        gaps = [g for g in self.generalization_gap.values() if len(g) > 1]
        if len(gaps) == 2 and gaps[0] == gaps[1]:
            gaps = gaps[:1]  # the best epoch is the final one
        if gaps:
            lines.append("Generalization gap (validation - training): "
                         + "; ".join(_gap_text(g) for g in gaps))
        lines.append("Why:")
        lines.extend(f"  - {r}" for r in self.reasons)
        lines.append("What to try next:")
        lines.extend(f"  - {a}" for a in self.advice)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def diagnose(history, *, patience=3, min_delta=0.0, monitor="val_loss", num_classes=None):
    """Diagnoses over- or under-fitting from a training history.

    Definitions (epochs 1-based; "better" means lower for a loss, higher for
    a monitor named like an accuracy, AUC, precision or recall):

    - Missing values. A value that is `None` (a phase that did not log that
      metric) is missing. Epochs without a finite `monitor` and a finite
      training `loss` are left out of everything below except `diverged`;
      the onset window counts only the epochs that have both.
    - Diverged: an epoch whose training `loss` is NaN, infinite or `None`
      (Keras logs `loss` at every epoch, and run folders store NaN as
      `null`), or whose `monitor` is NaN or infinite. `diverged_epoch` is the
      first such epoch.
    - Best epoch: the epoch with the best `monitor`; the first on ties.
    - Over-fitting onset: the first epoch `e` that is at the running best of
      `monitor` (no earlier epoch better) and such that on each of the
      `patience` epochs after it, `monitor` is worse than at `e` by more
      than `min_delta` (so it never comes back to its best within them)
      while the training loss is strictly below the training loss at `e`.
      `e` is the last epoch before validation starts getting worse: with
      `patience` and `min_delta` as in `keras.callbacks.EarlyStopping`,
      about where early stopping fires, except that a plateau or a rise of
      the training loss does not count. On a tie for the minimum the later
      epoch is the onset. `None` if no epoch qualifies, e.g. when fewer than
      `patience` epochs follow the best one.
    - Generalization gap: `val_loss - loss` and `val_accuracy - accuracy`
      at the best and at the final epoch. The training figures are averages
      over an epoch with dropout and augmentation on and include weight
      penalties, so a small negative loss gap is normal.
    - Verdict, the first rule that holds:
        1. `"diverged"`: as above.
        2. `"over-fitting"`: an onset, and the final `monitor` worse than the
           best by more than `WORSE` (5%) of the best (and by more than
           `min_delta`).
        3. `"under-fitting"`: over the last `patience` epochs (fewer if the
           history is shorter) both the training loss and `monitor` improved
           by more than `IMPROVING` (2%) per epoch on average, relative to
           their values at the start of that window (still learning); or,
           with `num_classes` given, the lowest training loss is at least
           `BASELINE` (0.75) times `ln(num_classes)`, the cross-entropy of
           guessing uniformly (barely fit the training data).
        4. `"inconclusive"`: a single usable epoch; or the final `monitor`
           notably worse than the best (as in 2) without an onset: the
           training loss did not fall (a too high learning rate or a noisy
           validation set), or too few epochs followed the best.
        5. `"good fit"`: otherwise.

    Args:
        history: a dict of per-epoch lists (`loss`, `val_loss`, ...; a
            Keras `History`, `FineTuner.history_`, or the content of a run
            folder's `history.json`, `{"history": {...}, "phases": [...]}`).
        patience: epochs of getting worse that confirm over-fitting, an
            int >= 1. Defaults to 3.
        min_delta: how much worse than the best counts as worse, >= 0.
            Defaults to 0.
        monitor: the validation metric to read. Defaults to `"val_loss"`.
        num_classes: the number of classes of a cross-entropy loss, for the
            baseline rule of under-fitting. Defaults to `None` (rule off).

    Returns:
        A `Diagnosis`.

    Example:

    >>> history = {"loss": [0.9, 0.6, 0.45, 0.35, 0.27, 0.2, 0.14],
    ...            "val_loss": [0.95, 0.7, 0.55, 0.5, 0.56, 0.63, 0.72]}
    >>> d = diagnose(history)
    >>> d.verdict, d.best_epoch, d.overfitting_onset
    ('over-fitting', 4, 4)
    >>> round(d.generalization_gap["final"]["loss"], 2)
    0.58
    """
    history = _per_epoch_lists(history)
    _check_options(patience, min_delta, monitor, num_classes)
    if monitor not in history:
        validation = sorted(k for k in history if k.startswith("val_"))
        if not validation:
            raise TransferkitError(
                "The history has no validation metrics; diagnosing over- and under-fitting "
                "needs them: train with validation data (transferkit train: --val or "
                "--val-split).")
        raise TransferkitError(f"The history has no {monitor!r}; use monitor= one of "
                               f"{', '.join(validation)}.")
    if "loss" not in history:
        raise TransferkitError("The history has no training 'loss'; pass the dict Keras' "
                               "fit returns (History.history).")
    lengths = {k: len(v) for k, v in history.items() if k in (monitor, "loss") or _metric(k)}
    epochs = lengths["loss"]
    for key, n in lengths.items():
        if n != epochs:
            raise TransferkitError(f"history[{key!r}] has {n} values but history['loss'] has "
                                   f"{epochs}; give one value per epoch for every metric.")
    if epochs == 0:
        raise TransferkitError("The history has no epochs; train for at least one epoch.")

    column = {key: _values(history, key) for key in lengths}
    loss, watched = column["loss"], column[monitor]
    diverged = next((i + 1 for i in range(epochs) if not _finite(loss[i])
                     or (watched[i] is not None and not _finite(watched[i]))), None)
    usable = [i for i in range(epochs) if _finite(watched[i]) and _finite(loss[i])]
    if not usable and diverged is None:
        raise TransferkitError(f"history[{monitor!r}] has no values (all None); "
                               "diagnosing needs validation figures.")
    accuracy = next((k for k in _ACCURACY_KEYS if k in column and "val_" + k in column), None)
    figures = _Figures(usable, [(-1.0 if _mode(monitor) == "max" else 1.0) * watched[i]
                                for i in usable], [loss[i] for i in usable], patience, min_delta)

    best, gap = {}, {}
    if figures.best is not None:
        i = usable[figures.best]
        keys = [monitor, "val_loss", accuracy and "val_" + accuracy, "loss", accuracy]
        best = {k: column[k][i] if _finite(column[k][i]) else None
                for k in dict.fromkeys(keys) if k in column}
        gap = {"best": _gap(column, i, accuracy), "final": _gap(column, usable[-1], accuracy)}
    if diverged is not None:
        value = loss[diverged - 1]
        what, value = ("training loss", value) if not _finite(value) else (
            monitor, watched[diverged - 1])
        said = "missing (a NaN saved as null)" if value is None else (
            "NaN" if math.isnan(value) else "infinite")
        verdict, reasons, advice = "diverged", [
            f"The {what} is {said} at epoch {diverged}: training diverged."
        ], list(_ADVICE["diverged"])
    else:
        verdict, reasons, advice = _verdict(figures, monitor, num_classes)
    reasons += _onset_notes(figures, verdict, monitor, epochs)
    return Diagnosis(
        verdict=verdict, reasons=reasons, advice=advice,
        best_epoch=figures.epoch(figures.best), best=best,
        overfitting_onset=figures.epoch(figures.onset), generalization_gap=gap,
        final_epoch=figures.epoch(figures.final), epochs=epochs, diverged_epoch=diverged,
        monitor=monitor, patience=int(patience), min_delta=float(min_delta),
    )


class _Figures:
    """The curves on the usable epochs, and what `diagnose` reads from them.

    `b` is the monitored value signed so that lower is better ("badness"),
    `t` the training loss; indices are positions in `usable`.
    """

    def __init__(self, usable, b, t, patience, min_delta):
        self.usable, self.b, self.t = usable, b, t
        self.patience, self.min_delta = patience, min_delta
        n = len(b)
        self.best = min(range(n), key=b.__getitem__) if n else None
        self.final = n - 1 if n else None
        self.onset = _onset(b, t, patience, min_delta)
        self.window = min(patience, n - 1)  # the steps of the end-of-run trend
        self.fall_t = self.fall_b = None
        if self.window >= 1:
            self.fall_t = _rate(t[-self.window - 1], t[-1], self.window)
            self.fall_b = _rate(b[-self.window - 1], b[-1], self.window)
        self.worse, self.rise, self.relative = False, None, None
        if n:
            scale = abs(b[self.best])
            self.rise = b[-1] - b[self.best]
            self.relative = self.rise / scale if scale else None
            self.worse = self.rise > max(min_delta, WORSE * scale)

    def epoch(self, j):
        return None if j is None else self.usable[j] + 1


def _verdict(f, monitor, num_classes):
    """`(verdict, reasons, advice)` of a history that did not diverge (rules 2-5)."""
    sign = -1.0 if _mode(monitor) == "max" else 1.0
    best, final = f.epoch(f.best), f.epoch(f.final)
    relative = "" if f.relative is None else f" ({f.relative:+.0%})"
    ending = (f"{monitor} at the final epoch {final} is {_number(sign * f.b[-1])}{relative}, "
              f"against {_number(sign * f.b[f.best])} at the best epoch {best}")
    if f.onset is not None and f.worse:
        return "over-fitting", [
            f"{monitor} was at its best so far at epoch {f.epoch(f.onset)} "
            f"({_number(sign * f.b[f.onset])}) and worse on each of the next {f.patience} "
            f"epochs while the training loss fell below {_number(f.t[f.onset])}: over-fitting "
            f"from epoch {f.epoch(f.onset)}.",
            ending + f": more than {WORSE:.0%} worse.",
        ], list(_ADVICE["over-fitting"])

    reasons = []
    if f.window >= 1 and f.fall_t > IMPROVING and f.fall_b > IMPROVING:
        reasons.append(
            f"Over the last {f.window} epochs the training loss fell {f.fall_t:.1%} and "
            f"{monitor} improved {f.fall_b:.1%} per epoch: both still improving (more than "
            f"{IMPROVING:.0%} per epoch).")
    if num_classes is not None:
        baseline, lowest = math.log(num_classes), min(f.t)
        if lowest >= BASELINE * baseline:
            reasons.append(
                f"The lowest training loss, {_number(lowest)}, is {lowest / baseline:.0%} of "
                f"ln({num_classes}) = {_number(baseline)}, the loss of guessing uniformly: the "
                "model has barely fit the training data.")
    if reasons:
        return "under-fitting", reasons, list(_ADVICE["under-fitting"])

    if len(f.b) == 1:
        return "inconclusive", [
            f"Only one epoch has both {monitor} and a training loss: no curve to read."
        ], ["Train for more epochs (`--epochs`) so the curves can be compared."]
    if f.worse:
        after = len(f.b) - 1 - f.best
        if f.t[-1] >= f.t[f.best]:
            return "inconclusive", [
                ending + f", but the training loss did not fall ({_number(f.t[f.best])} then, "
                f"{_number(f.t[-1])} at the end): not over-fitting; unstable training or a "
                "noisy validation set."
            ], [_LOWER_RATE, _MORE_VALIDATION]
        if after < f.patience:
            return "inconclusive", [
                ending + f", but only {_epochs(after)} followed the best (patience "
                f"{f.patience}): over-fitting not confirmed."
            ], ["Train a few epochs more (`--epochs`) to see whether it keeps getting worse, "
                "or diagnose with a smaller `--patience`."] + _ADVICE["over-fitting"][:2]
        return "inconclusive", [
            ending + f", but it was never worse for {f.patience} epochs in a row while the "
            "training loss fell: noisy."
        ], [_MORE_VALIDATION, _LOWER_RATE]

    reasons = [f"{monitor} is at its best at the final epoch {final} ({_number(sign * f.b[-1])})."
               if f.best == f.final else ending + f": within {WORSE:.0%} of it."]
    reasons.append(
        f"Over the last {f.window} epochs the training loss changed {-f.fall_t:+.1%} and "
        f"{monitor} {'improved' if f.fall_b >= 0 else 'worsened'} {abs(f.fall_b):.1%} per "
        f"epoch: not both improving markedly (> {IMPROVING:.0%}).")
    return "good fit", reasons, list(_ADVICE["good fit"])


def _onset_notes(f, verdict, monitor, epochs):
    """What the onset search found, where the verdict does not already say it."""
    if f.onset is not None and verdict != "over-fitting":
        return [f"{monitor} got worse for {f.patience}+ epochs after epoch "
                f"{f.epoch(f.onset)} while the training loss fell (over-fitting onset)"
                + ("." if f.worse else f", but ended within {WORSE:.0%} of its best.")]
    if f.onset is None and f.best is not None and verdict != "inconclusive":
        after = len(f.b) - 1 - f.best
        if after >= f.patience:
            where = (f"{monitor} was never worse than a running best for {f.patience} epochs "
                     "in a row while the training loss fell")
        else:
            where = (f"{monitor} was best at epoch {f.epoch(f.best)}, "
                     + ("the last one" if after == 0 else f"{_epochs(after)} before the end")
                     + f"; confirming over-fitting takes {_epochs(f.patience)} getting worse")
        return [f"Over-fitting not observed within {_epochs(epochs)}: {where}."]
    return []


def diagnose_run(run_dir, *, patience=3, min_delta=0.0, monitor="val_loss"):
    """Diagnoses a run folder written by `transferkit train` or `transferkit cv`.

    Reads `history.json` (and `num_classes` from `config.json`'s
    `class_names`, when there) and calls `diagnose`.

    Args:
        run_dir: the run folder (`--out`).
        patience, min_delta, monitor: as in `diagnose`.

    Returns:
        A `Diagnosis` for a train run; a list of them, one per fold, for a
        cv run.

    Example:

    >>> diagnose_run("runs/ants").verdict  # doctest: +SKIP
    'good fit'
    """
    from transferkit.runs import CONFIG_FILE, HISTORY_FILE, read_json

    if not isinstance(run_dir, (str, os.PathLike)):
        raise TransferkitError(f"run_dir must be a folder path; got {type(run_dir).__name__}.")
    path = os.fspath(run_dir)
    if not os.path.isdir(path):
        raise TransferkitError(f"No run folder {path}; pass the --out folder of "
                               "`transferkit train` or `transferkit cv`.")
    data = read_json(os.path.join(path, HISTORY_FILE))
    num_classes = None
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        names = read_json(os.path.join(path, CONFIG_FILE))
        names = names.get("class_names") if isinstance(names, dict) else None
        if isinstance(names, list) and len(names) >= 2:
            num_classes = len(names)
    options = dict(patience=patience, min_delta=min_delta, monitor=monitor,
                   num_classes=num_classes)
    where = os.path.join(path, HISTORY_FILE)
    if isinstance(data, dict) and isinstance(data.get("folds"), list):
        if not data["folds"]:
            raise TransferkitError(f"{where} lists no folds; is the cv run complete?")
        return [_diagnose_entry(fold, f"{where} (fold {k})", options)
                for k, fold in enumerate(data["folds"], 1)]
    return _diagnose_entry(data, where, options)


def _diagnose_entry(data, where, options):
    if isinstance(data, dict) and "grid" in data and "history" not in data:
        raise TransferkitError(f"{where}: no epochs to diagnose; a linear head (--head logreg or "
                               "linear-svm) has a C search, not a training curve.")
    if not (isinstance(data, dict) and isinstance(data.get("history"), dict)):
        raise TransferkitError(f"{where} is not a transferkit training history (no 'history', "
                               "'grid' or 'folds'); is this a run folder?")
    try:
        return diagnose(data["history"], **options)
    except TransferkitError as e:
        raise TransferkitError(f"{where}: {e}") from None


def _onset(b, t, patience, min_delta):
    """The index of the over-fitting onset in the usable epochs, or `None`."""
    running = math.inf
    for e in range(len(b)):
        if b[e] > running:
            continue  # not at the running best
        running = b[e]
        after = range(e + 1, e + 1 + patience)
        if after.stop > len(b):
            return None  # later epochs have even fewer epochs after them
        if all(b[k] > b[e] + min_delta and t[k] < t[e] for k in after):
            return e
    return None


def _rate(start, end, steps):
    """The mean relative fall per step from `start` to `end` (0 for a zero start)."""
    return (start - end) / abs(start) / steps if start else 0.0


def _gap(column, i, accuracy):
    gap = {"epoch": i + 1}
    pairs = [("loss", "val_loss", "loss")]
    if accuracy:
        pairs.append(("accuracy", "val_" + accuracy, accuracy))
    for name, val, train in pairs:
        if val in column and _finite(column[val][i]) and _finite(column[train][i]):
            gap[name] = column[val][i] - column[train][i]
    return gap


def _gap_text(gap):
    figures = ", ".join(f"{k} {v:+.4g}" for k, v in gap.items() if k != "epoch")
    return f"epoch {gap['epoch']}: {figures}"


def _per_epoch_lists(history):
    if not isinstance(history, Mapping) and isinstance(getattr(history, "history", None),
                                                       Mapping):
        history = history.history  # a keras.callbacks.History
    if isinstance(history, Mapping) and isinstance(history.get("history"), Mapping):
        history = history["history"]  # a run folder's history.json
    if not isinstance(history, Mapping):
        raise TransferkitError(f"history must be a dict of per-epoch lists like Keras' "
                               f"History.history; got {type(history).__name__}.")
    out = {}
    for key, values in history.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            if _metric(key) or key == "loss":
                raise TransferkitError(f"history[{key!r}] must be a list with one value per "
                                       f"epoch; got {type(values).__name__}.")
            continue  # not a per-epoch column
        out[key] = values
    return out


def _values(history, key):
    values = []
    for i, v in enumerate(history[key]):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise TransferkitError(f"history[{key!r}][{i}] is {v!r}, not a number or None; "
                                   "give the figures of each epoch.")
        values.append(None if v is None else float(v))
    return values


def _check_options(patience, min_delta, monitor, num_classes):
    if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1:
        raise TransferkitError(f"patience must be an int >= 1, like 3; got {patience!r}.")
    if (isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real)
            or not 0 <= min_delta < math.inf):
        raise TransferkitError(f"min_delta must be a number >= 0, like 0.01; got {min_delta!r}.")
    if not isinstance(monitor, str) or not monitor.startswith("val_"):
        raise TransferkitError(f"monitor must be a validation metric like 'val_loss'; got "
                               f"{monitor!r}.")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(
            num_classes, numbers.Integral) or num_classes < 2):
        raise TransferkitError(f"num_classes must be an int >= 2 or None; got {num_classes!r}.")


def _metric(key):
    # The columns diagnose reads: losses and accuracies, training and validation.
    name = key.removeprefix("val_")
    return name == "loss" or name in _ACCURACY_KEYS


def _mode(monitor):
    name = monitor.removeprefix("val_")
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")) \
        else "min"


def _finite(value):
    return value is not None and math.isfinite(value)


def _epochs(n):
    return f"{n} epoch" + ("" if n == 1 else "s")


def _number(value):
    return f"{value:.4g}"
