"""`cross_validate`: the recipe on k stratified folds, mean and spread of its scores.

Seed 001: with a few hundred images one validation split is a noisy
measurement; "make sure to cross-validate". Every image is validated on
exactly once. With a frozen, unaugmented first phase (or a linear head) the
backbone's features of all the images are computed once and shared by every
fold, so k folds cost little more than one.
"""

import dataclasses
import os
import tempfile
import time

import numpy as np

from transferkit.data.tables import table_task
from transferkit.errors import TransferkitError
from transferkit.runs import CONFIG_FILE, CURVES_FILE, HISTORY_FILE, METRICS_FILE, jsonable
from transferkit.training.config import TextColumns, check_log_packages, training_config
from transferkit.training.distribution import accepts_distribution, is_follower
from transferkit.workflows.common import (
    FEATURES_DIR,
    TARGET_NOUNS,
    as_follower,
    devices_of,
    backbone_record,
    check_data,
    check_table,
    say_source,
    checked_cache_dir,
    input_description,
    modality_of,
    model_inputs,
    read_labelled,
    skipped_record,
    take,
    versions,
)

# The per-fold figures the table shows and the summary averages.
SCORES = ("best_val_accuracy", "best_val_loss", "final_val_accuracy")
# The same for multi-label and numeric targets (the first names the task).
TARGET_SCORES = {
    "multilabel": ("val_mean_average_precision", "val_micro_f1", "val_macro_f1",
                   "best_val_loss"),
    "regression": ("val_rmse", "val_mae", "val_r2", "best_val_loss"),
}


@accepts_distribution
def cross_validate(data_dir, backbone, out=None, *, folds=5, seed=0, cache_dir=None,
                   report=True, strict=False, overwrite=False, columns=None, table=None,
                   verbose="auto", **options):
    """Runs `train`'s recipe on each of `folds` stratified folds of `data_dir`.

    The folds are scikit-learn's `StratifiedKFold(folds, shuffle=True,
    random_state=seed)`: each class is spread evenly, and the same seed gives
    the same folds. Fold `k` trains on the other folds and validates on
    fold `k`, with `seed` for the initialization as in `train`.

    Args:
        data_dir: the images, one subfolder per class; for a text backbone,
            a labelled text file (see `train`).
        backbone: a catalogue name.
        out: optional folder to write: `metrics.json` (per fold, mean,
            standard deviation), `history.json` (each fold's history or C
            grid), `config.json`, `curves.png` (every fold's validation
            curves) and `features/` (unless `cache_dir`). Written complete or
            not at all. Defaults to `None` (nothing written; the shared
            features live in a temporary folder).
        folds: the number of folds, at least 2 and at most the smallest
            class's image count. Defaults to 5.
        seed: seeds the folds and every fold's training. Defaults to 0.
        cache_dir: a feature-cache folder shared with other runs.
        report: with `out`, also write `report.html` and `report.json`
            (`transferkit.write_report`). Defaults to `True`.
        strict: a file that does not decode is an error instead of skipped.
        overwrite: replace `out` if it is a previous `cv` run or an empty
            folder. Defaults to `False`.
        columns: for a text file, a `TextColumns`. Defaults to `None`: the
            columns named "text" and "label".
        table: a `LabelTable` labelling the images by a table (see `train`).
            Multi-label folds come from iterative stratification, numeric
            targets' folds are stratified on quantile bins
            (`transferkit.data.splits`).
        distribution: a `tf.distribute.Strategy` or `keras.distribution.Distribution` you made,
            used instead of `devices` (`transferkit.training.distribution.using`). Defaults
            to `None`.
        verbose: Keras' verbosity. Defaults to `"auto"`.
        **options: `train`'s model and training options (`head`, `epochs`,
            `learning_rate`, `unfreeze`, `augment`, `image_size`, `crop`, ...).

    Returns:
        A dict: `folds` (one dict of metrics per fold), `mean` and `std`
        (sample standard deviation, ddof=1) of each score, `out`.

    Example:

    >>> result = cross_validate("hymenoptera/train", "efficientnet_lite0",
    ...                         folds=5, head="logreg")  # doctest: +SKIP
    >>> result["mean"]["best_val_accuracy"], result["std"]["best_val_accuracy"]  # doctest: +SKIP
    """
    from transferkit.outputs import check_output_folder, output_folder

    start = time.perf_counter()
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise TransferkitError(f"folds must be an int >= 2, got {folds!r}.")
    # The paths first: that needs no Keras, whose import takes seconds.
    devices = devices_of(backbone, options)
    text = modality_of(backbone, devices) == "text"
    if is_follower(devices):  # trains with process 0, which alone writes
        return as_follower(cross_validate, data_dir=data_dir, backbone=backbone, out=out,
                           folds=folds, seed=seed, cache_dir=cache_dir, report=report,
                           strict=strict, overwrite=overwrite, columns=columns, table=table,
                           verbose=verbose, **options)
    check_data((data_dir,), "text" if text else "image")
    check_table(table, text)
    if table is not None and table.val_labels is not None:
        raise TransferkitError("cv validates on folds of the data; --val-labels is for train.")
    inputs = (data_dir, cache_dir)
    if out is not None:
        check_output_folder(out, "cv", inputs=inputs, overwrite=overwrite)
    config = training_config(backbone, {**options, "seed": seed}, "cross_validate")
    check_log_packages(config.log)
    from transferkit.training.features import FeatureCache
    from transferkit.training.trainer import Trainer
    from transferkit.training.tracking import log_callbacks, mlflow_run

    trainer = Trainer(config, verbose=verbose)
    cache_dir = checked_cache_dir(cache_dir)
    say_source(trainer)

    with output_folder(out, "cv", inputs=inputs, overwrite=overwrite) as tmp, \
            mlflow_run(config.log, config.mlflow_uri,
                       f"cv {os.fspath(out if out is not None else data_dir)}") as tracked:
        folder = read_labelled(data_dir, text, strict, columns, table)
        task = table_task(folder)
        splits = _folds(folder, task, folds, seed, "text" if text else "image")
        # Head "auto" decided as train decides it, for a fold's training images.
        trainer = trainer.for_data(len(folder) - max(len(v) for _, v in splits), task)
        trainer.config.for_task(task)
        if text:
            trainer = trainer.for_texts(folder.texts)
        config = trainer.config
        shape, input_config = input_description(trainer)
        if tracked is not None:
            tracked.log_params({"command": "cv", "data": os.fspath(data_dir), "folds": folds,
                                **config.to_dict()})
        trainer.say(f"{len(folder)} {trainer.noun}, {TARGET_NOUNS[task]} "
                    f"{folder.class_names}; {folds} stratified folds (seed {seed}), {shape}.")
        trainer.hint(len(folder) - len(splits[0][1]))
        if task == "classes":
            trainer.skew_hint(folder.labels, folder.class_names)
        x, files = model_inputs(trainer, folder)  # images streamed, texts as token ids
        y = folder.labels

        def run_folds(cache, where, logs=None):
            def features_for(train_index, val_index):
                def features(extractor):
                    # The cache key hashes the backbone's weights: every fold whose
                    # backbone starts from the same weights reads one extraction.
                    every = trainer.features(cache, extractor, x, files,
                                             f"all {trainer.noun}'", where)
                    return every[train_index], every[val_index]
                return features

            rows, histories = [], []
            for k, (train_index, val_index) in enumerate(splits):
                trainer.say(f"Fold {k + 1}/{folds}: {len(train_index)} training, {len(val_index)} "
                            f"validation {trainer.noun}.")
                fitted = trainer.fit(take(x, train_index), y[train_index], take(x, val_index),
                                     y[val_index], len(folder.class_names),
                                     features=features_for(train_index, val_index),
                                     class_names=folder.class_names, task=task,
                                     callbacks=log_callbacks(config.log, logs,
                                                             columns={"fold": k + 1},
                                                             name=f"fold-{k + 1}",
                                                             tracked=tracked))
                rows.append({"fold": k + 1, f"train_{trainer.noun}": int(len(train_index)),
                             f"val_{trainer.noun}": int(len(val_index)), **fitted["metrics"]})
                histories.append(fitted["history"])
            return rows, histories

        arguments = {"data_dir": data_dir, "out": out, "folds": folds, "cache_dir": cache_dir,
                     "report": report, "strict": strict,
                     **({"columns": dataclasses.asdict(columns or TextColumns())} if text
                        else {}),
                     **({"table": dataclasses.asdict(table)} if task != "classes"
                        or (table is not None and table.labels is not None) else {}),
                     **config.to_dict()}
        if out is None:
            with tempfile.TemporaryDirectory(prefix="transferkit-cv-") as scratch:
                rows, histories = run_folds(FeatureCache(cache_dir or scratch),
                                            cache_dir or "a temporary folder")
            result = _summary(rows, task)
        else:
            if log_callbacks(config.log, tmp) and not config.linear:
                trainer.say(f"Live logs, per epoch, until {out} is written: {tmp}.")
            rows, histories = run_folds(
                FeatureCache(cache_dir or os.path.join(tmp, FEATURES_DIR)),
                cache_dir or os.path.join(os.fspath(out), FEATURES_DIR), logs=tmp)
            result = _summary(rows, task)
            from transferkit.runs import write_json

            write_json(os.path.join(tmp, METRICS_FILE), {
                **result, trainer.noun: len(folder), **skipped_record(folder, text),
                "seconds": round(time.perf_counter() - start, 1)})
            write_json(os.path.join(tmp, HISTORY_FILE), {"folds": histories})
            write_json(os.path.join(tmp, CONFIG_FILE), {
                "command": "cv",
                "arguments": {k: jsonable(v) for k, v in arguments.items()},
                "training": config.to_dict(),
                "class_names": list(folder.class_names),
                "task": task,
                **input_config,
                **backbone_record(trainer), "head": trainer.config.head,
                "folds": [[int(i) for i in val] for _, val in splits],
                "versions": versions()})
            _plot(trainer, histories, os.path.join(tmp, CURVES_FILE), folds,
                  os.path.basename(os.path.abspath(data_dir)))
            if report and task != "classes":
                trainer.say("report.html covers classes; metrics.json has every fold's "
                            "figures.")
            elif report:
                from transferkit.evaluation.report import write_report

                write_report(tmp, location=out)
        if tracked is not None:
            tracked.log_metrics({f"{kind}_{k}": v for kind in ("mean", "std")
                                 for k, v in result[kind].items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)},
                                step=0)
            if out is not None:
                tracked.log_files(tmp)
    trainer.say(format_table(result))
    trainer.say(f"{folds}-fold cross-validation in {time.perf_counter() - start:.0f} s"
                + (f"; wrote {out}." if out is not None else "."))
    return {**result, "out": None if out is None else os.fspath(out)}


def format_table(result):
    """The per-fold scores, then mean and standard deviation, as text."""
    task = next((t for t, scores in TARGET_SCORES.items()
                 if scores[0] in result["mean"]), None)
    if task is not None:
        return _format_targets(result, TARGET_SCORES[task])
    header = ["fold", "train", "val", "val_accuracy", "val_loss", "best_epoch"]
    if any(row.get("C") is not None for row in result["folds"]):
        header[-1] = "C"
    lines = [header]
    for row in result["folds"]:
        last = row.get("C") if header[-1] == "C" else row.get("best_epoch")
        noun = "texts" if "train_texts" in row else "images"
        lines.append([str(row["fold"]), str(row[f"train_{noun}"]), str(row[f"val_{noun}"]),
                      _number(row["best_val_accuracy"]), _number(row["best_val_loss"]),
                      "-" if last is None else f"{last:g}"])
    mean, std = result["mean"], result["std"]
    lines.append(["mean", "", "", _number(mean["best_val_accuracy"]),
                  _number(mean["best_val_loss"]), ""])
    lines.append(["std", "", "", _number(std["best_val_accuracy"]),
                  _number(std["best_val_loss"]), ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


def _format_targets(result, scores):
    """`format_table` for multi-label or numeric targets: their figures per fold."""
    scores = [s for s in scores if result["mean"][s] is not None]  # a linear head: no loss
    header = ["fold", "train", "val", *scores]
    lines = [header]
    for row in result["folds"]:
        noun = "texts" if "train_texts" in row else "images"
        lines.append([str(row["fold"]), str(row[f"train_{noun}"]), str(row[f"val_{noun}"]),
                      *(_number(row.get(score)) for score in scores)])
    for kind in ("mean", "std"):
        lines.append([kind, "", "", *(_number(result[kind][score]) for score in scores)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


def _folds(folder, task, folds, seed, noun):
    """`[(train indices, validation indices)]` of each fold, stratified as `task` allows."""
    from transferkit.data import splits

    if task == "multilabel":
        return splits.iterative_folds(folder.labels, folds, seed)
    if task == "regression":
        return splits.binned_folds(folder.labels, folds, seed)
    from sklearn.model_selection import StratifiedKFold

    smallest = min(folder.class_counts().items(), key=lambda item: item[1])
    if smallest[1] < folds:
        raise TransferkitError(
            f"Class '{smallest[0]}' has {smallest[1]} {noun}(s), fewer than --folds {folds}; "
            f"use fewer folds or add {noun}s."
        )
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        np.zeros(len(folder)), folder.labels))


def _summary(rows, task="classes"):
    mean, std = {}, {}
    for score in SCORES if task == "classes" else TARGET_SCORES[task]:
        values = [row[score] for row in rows if row.get(score) is not None]
        mean[score] = float(np.mean(values)) if values else None
        std[score] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"folds": rows, "mean": mean, "std": std}


def _number(value):
    return "-" if value is None else f"{value:.4f}"


def _plot(trainer, histories, path, folds, data_name):
    from transferkit.evaluation.plots import plot_folds, plot_grid

    title = f"{trainer.backbone.name} on {data_name}: {folds}-fold cross-validation"
    if trainer.config.linear:
        # Each fold chose its own C; the first fold's grid shows the search.
        plot_grid(histories[0]["grid"], path, title=f"{title} (fold 1's C search)")
    else:
        plot_folds([h["history"] for h in histories], path, title=title)
