"""`train`: an image folder and a backbone in, a complete run folder out."""

import contextlib
import dataclasses
import os
import shutil
import time

from transferkit.errors import TransferkitError
from transferkit.outputs import check_output_folder, output_folder
from transferkit.runs import (
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    jsonable,
    write_json,
)
from transferkit.training.config import (
    PLACEMENT_OPTIONS,
    WATCHING_OPTIONS,
    TextColumns,
    check_log_packages,
    training_config,
)
from transferkit.data.tables import table_task
from transferkit.training.distribution import (
    accepts_distribution,
    is_follower,
    is_multi_process,
)
from transferkit.workflows.common import (
    FEATURES_DIR,
    TARGET_NOUNS,
    TASK_OUTPUTS,
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
    plot_fit,
    scan_split,
    target_summary,
    targets_digest,
    texts_digest,
    versions,
)


@accepts_distribution
def train(data_dir, backbone, out, *, val=None, val_split=0.2, cache_dir=None, report=True,
          strict=False, overwrite=False, resume=False, columns=None, table=None,
          verbose="auto", **options):
    """Fine-tunes a catalogue backbone on an image folder or a text file; writes a run folder.

    The data: for an image backbone, `data_dir` has one subfolder per class,
    and validation images come from `val` (the same class subfolders) or,
    without it, a stratified `val_split` of `data_dir` drawn with `seed`. For
    a text backbone (`minilm_l6`), `data_dir` and `val` are labelled text
    files (CSV, TSV, JSONL, gzipped too; `transferkit.data.read_text_file`),
    their columns as `columns` says, the texts cut at `max_length` tokens
    (by default chosen from the training texts: `Trainer.for_texts`). The model: `build(backbone,
    num_classes)` with augmentation (training only), dropout and penalties.
    The training: the two-phase recipe (`default_recipe`) run by
    `FineTuner`, best weights kept. While the backbone is frozen and the
    images are not augmented, the head trains on the backbone's features
    computed once and kept on disk (`FeatureCache`, in the run folder's
    `features/` or in `cache_dir`): a rerun on the same files reads them.

    With `head="logreg"` or `"linear-svm"` (seed 001's advice for under
    ~1,000 images) no network trains: a scikit-learn linear classifier is fit
    on the frozen backbone's pooled features, its `C` chosen by stratified
    cross-validation on the training images (`transferkit.training.linear`), and
    saved as the model's Dense output layer.

    The run folder (written complete or not at all) holds `model.keras`
    (raw RGB images in, class probabilities out; decision scores for
    `"linear-svm"`), `history.json`, `metrics.json` (final and best
    validation accuracy and loss), `config.json` (the arguments, so
    `train(**config["arguments"])` reruns it, plus class names and versions),
    `curves.png` and `features/` (unless `cache_dir` is given).

    Args:
        data_dir: the training images, one subfolder per class; or, for a
            text backbone, a labelled text file.
        backbone: a catalogue name (`transferkit backbones`), or a whole
            `TrainingConfig` (then `**options` change it).
        out: the run folder to create.
        val: optional folder of validation images (same classes), or text
            file for a text backbone.
        val_split: the share of `data_dir` held out when `val` is `None`.
            Defaults to `0.2`.
        cache_dir: a folder for the feature cache, shared between runs.
            Defaults to `None`: the run folder's `features/`.
        report: also write `report.html` and `report.json` (metrics,
            diagnosis, curves, the validation images' confusion matrix and
            worst-classified examples; `transferkit.write_report`). Defaults
            to `True`.
        strict: a file that does not decode is an error instead of skipped.
        overwrite: replace `out` if it is a previous `train` run (its
            `config.json` says so) or an empty folder; anything else there is
            refused. Defaults to `False`.
        resume: continue an interrupted run from `<out>.partial/`. While a
            network trains, a checkpoint of every completed epoch is kept in
            that visible folder beside `out` (`transferkit.training.resume`),
            removed once `out` is written. A later run on the same `out` with
            `resume=True` continues from its last epoch; with other options
            or data it is refused. Without a checkpoint, `resume=True` trains
            from the start. Without `resume`, an existing `<out>.partial/`
            is refused (pass `resume=True` or remove it). Defaults to `False`.
        columns: for text files, a `TextColumns` (the text and label
            columns, header, skipping malformed rows). Defaults to `None`:
            `TextColumns()`, the columns named "text" and "label".
        table: for image folders labelled by a table instead of class
            subfolders, a `LabelTable` (its `labels` file; `val_labels` for a
            `val` folder): one class per image, several labels (a sigmoid
            per label, thresholds tuned on validation) or a number
            (regression). Bad rows are skipped with `columns.skip_bad_rows`.
            Defaults to `None`: class subfolders.
        distribution: a `tf.distribute.Strategy` or `keras.distribution.Distribution` you made,
            used instead of `devices` (`transferkit.training.distribution.using`). Defaults
            to `None`.
        verbose: Keras' verbosity. Defaults to `"auto"` (progress bars).
        **options: how the model is built and trained: the fields of
            `TrainingConfig` (`head`, `epochs`, `learning_rate`, `unfreeze`,
            `kernel`, `dropout`, `augment`, `image_size`, `crop`,
            `batch_size`, `patience`, `seed`, `weights`, `from_scratch`,
            ...), each documented there with its default.

    Returns:
        A dict: `model`, `tuner` (the fitted `FineTuner`, or `None`),
        `linear` (the fitted `LinearHead`, or `None`), `metrics`, `config`,
        `out`.

    Example:

    >>> run = train("hymenoptera/train", "efficientnet_lite0", "runs/ants",
    ...             val="hymenoptera/val", epochs=(5, 5))  # doctest: +SKIP
    >>> run["metrics"]["best_val_accuracy"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    # Everything that can be wrong is checked before the first image is read;
    # the output folder is locked for the whole run. The paths first: that
    # needs no Keras, whose import takes seconds.
    devices = devices_of(backbone, options)
    text = modality_of(backbone, devices) == "text"
    if resume and is_multi_process(devices):
        raise TransferkitError(
            "--resume is for runs of one process: the processes of a multi-process run would "
            "restore their checkpoints apart. Start the run again without it.")
    if is_follower(devices):  # trains with process 0, which alone writes
        return as_follower(train, data_dir=data_dir, backbone=backbone, out=out, val=val,
                           val_split=val_split, cache_dir=cache_dir, report=report,
                           strict=strict, overwrite=overwrite, columns=columns, table=table,
                           verbose=verbose, **options)
    check_data((data_dir, val), "text" if text else "image")
    check_table(table, text)
    check_output_folder(out, "train", inputs=(data_dir, val, cache_dir), overwrite=overwrite)
    # An unknown backbone fails here before Keras is imported (the catalogue
    # needs none); the other options' checks import it.
    config = training_config(backbone, options, "train")
    check_log_packages(config.log)
    from transferkit.saving import file_sha256
    from transferkit.training.features import FeatureCache, files_digest
    from transferkit.training.resume import PartialRun
    from transferkit.training.tracking import mlflow_run
    from transferkit.training.trainer import Trainer

    trainer = Trainer(config, verbose=verbose)
    cache_dir = checked_cache_dir(cache_dir)
    say_source(trainer)
    partial_dir = partial_folder(out)
    partial = None
    if PartialRun(partial_dir, None).latest() is not None and not resume:
        raise TransferkitError(
            f"{partial_dir} holds the checkpoint of an interrupted run: pass --resume "
            "(resume=True) to continue it, or remove the folder to start again.")
    # Features computed before an interruption are kept there too (their keys
    # check them), so that any later run on `out` reuses them.
    features_dir = cache_dir or os.path.join(partial_dir, FEATURES_DIR)
    with output_folder(out, "train", inputs=(data_dir, val, cache_dir),
                       overwrite=overwrite, space=trainer.disk_space()) as tmp, \
            _kept_when_interrupted(partial_dir), \
            mlflow_run(config.log, config.mlflow_uri, f"train {os.fspath(out)}") as tracked:
        folder, train_set, val_set = scan_split(data_dir, val, val_split, config.seed, strict,
                                                text=text, columns=columns, table=table)
        task = table_task(train_set)
        trainer = trainer.for_data(len(train_set), task)  # head "auto" decided
        trainer.config.for_task(task)
        if text:
            trainer = trainer.for_texts(train_set.texts)  # max_length decided
        config = trainer.config
        noun = trainer.noun
        if tracked is not None:
            tracked.log_params({"command": "train", "data": os.fspath(data_dir),
                                "val": val and os.fspath(val), **config.to_dict()})
        shape, input_config = input_description(trainer)
        trainer.say(f"{len(train_set)} training {noun}, {len(val_set)} validation {noun}, "
                    f"{TARGET_NOUNS[task]} {train_set.class_names}; {shape}.")
        trainer.hint(len(train_set))
        if task == "classes":
            trainer.skew_hint(train_set.labels, train_set.class_names)
        # Images streamed (decoded batch by batch); texts as token ids, 4 bytes a token.
        x_train, train_files = model_inputs(trainer, train_set)
        x_val, val_files = model_inputs(trainer, val_set)
        identity = {"train_texts": texts_digest(train_set.texts, train_set.labels),
                    "val_texts": texts_digest(val_set.texts, val_set.labels)} if text else {
            "train_files": files_digest(train_files), "val_files": files_digest(val_files),
            **({} if task == "classes" else {"targets": targets_digest(train_set.labels,
                                                                      val_set.labels)}),
            **({"backbone_sha256": trainer.backbone.sha256} if trainer.reused else {})}
        y_train, y_val = train_set.labels, val_set.labels
        callbacks = []
        if not config.linear:
            # Where the run is watched (--log) is no part of what a resume must match.
            partial = PartialRun(partial_dir, {
                "training": {k: v for k, v in config.to_dict().items()
                             if k not in WATCHING_OPTIONS + placement_options(config)},
                "class_names": list(train_set.class_names), **identity}, seed=config.seed)
            resumed = resume and partial.load()
            if resumed:
                trainer.say(f"Resuming from {partial_dir}: {partial.completed} epochs done.")
            elif resume:
                trainer.say(f"No checkpoint in {partial_dir}: training from the start.")
            callbacks = _live_logs(trainer, partial_dir, partial.completed if resumed else 0,
                                   tracked)
        cache = FeatureCache(features_dir)
        where = cache_dir or os.path.join(os.fspath(out), FEATURES_DIR)

        def features(extractor):
            return (trainer.features(cache, extractor, x_train, train_files, "training", where),
                    trainer.features(cache, extractor, x_val, val_files, "validation", where))

        try:
            fitted = trainer.fit(x_train, y_train, x_val, y_val, len(train_set.class_names),
                                 features=features,
                                 checkpoint=os.path.join(tmp, "best.weights.h5"),
                                 partial=partial, class_names=train_set.class_names,
                                 callbacks=callbacks, task=task)
        except KeyboardInterrupt as e:
            # For the command line's message: what is kept, and where.
            if partial is not None and partial.latest() is not None:
                e.checkpoint = {"folder": partial_dir, "completed": partial.completed,
                                "total": partial.total}
            elif cache_dir is None and os.path.isdir(features_dir):
                e.kept = features_dir
            raise
        if cache_dir is None and os.path.isdir(features_dir):
            os.replace(features_dir, os.path.join(tmp, FEATURES_DIR))  # into the run
        for name in _logged(config.log):  # the live logs too
            if os.path.exists(os.path.join(partial_dir, name)):
                os.replace(os.path.join(partial_dir, name), os.path.join(tmp, name))
        model = fitted["model"]
        # A split's validation part repeats its file's skipped list.
        skipped = [(data_dir, s) for s in folder.skipped] + (
            [(val, s) for s in val_set.skipped] if val is not None else [])
        metrics = {
            **fitted["metrics"],
            f"train_{noun}": len(train_set), f"val_{noun}": len(val_set),
            # Rows of text files by (file, line); image files by path.
            **({"skipped_rows": [[os.fspath(f), line] for f, (line, _) in skipped]} if text
               else {"skipped_files": [str(p) for _, (p, _) in skipped]}),
            "seconds": round(time.perf_counter() - start, 1),
        }
        arguments = {"data_dir": data_dir, "out": out, "val": val, "val_split": val_split,
                     "cache_dir": cache_dir, "report": report, "strict": strict,
                     **({"columns": dataclasses.asdict(columns or TextColumns())}
                        if text else {}),
                     **({"table": dataclasses.asdict(table)}
                        if table is not None and table.labels is not None else {})}
        run_config = {
            "command": "train",
            # `train(**arguments)` reruns it: the run's own arguments, then the config.
            "arguments": {**{k: jsonable(v) for k, v in arguments.items()},
                          **config.to_dict()},
            # The configuration alone: TrainingConfig.from_dict(config["training"]).
            "training": config.to_dict(),
            "class_names": list(train_set.class_names),
            **input_config,
            **backbone_record(trainer),
            "head": config.head,
            "task": task,
            "outputs": ("scores" if config.head == "linear-svm" else "probabilities")
            if task == "classes" else TASK_OUTPUTS[task],
            "augmentation": None if config.linear else trainer.augmentation_description,
            **fitted["config"],
            "versions": versions(),
        }
        model.save(os.path.join(tmp, MODEL_FILE))
        # predict and evaluate warn when the model file is no longer this one.
        run_config["model_sha256"] = file_sha256(os.path.join(tmp, MODEL_FILE))
        write_json(os.path.join(tmp, HISTORY_FILE), fitted["history"])
        write_json(os.path.join(tmp, METRICS_FILE), metrics)
        write_json(os.path.join(tmp, CONFIG_FILE), run_config)
        plot_fit(trainer, fitted, os.path.join(tmp, CURVES_FILE),
                 title=f"{trainer.backbone.name} on "
                 f"{os.path.basename(os.path.abspath(data_dir))}")
        if report and task != "classes":
            trainer.say("report.html covers classes; metrics.json has this run's "
                        f"{'label' if task == 'multilabel' else 'regression'} figures.")
        elif report:
            from transferkit.evaluation.report import write_report

            # The saved model's scores on x_val came with the metrics: the
            # report neither loads the model nor decodes the images again.
            write_report(tmp, data_dir=val_set, location=out,
                         evaluated=(fitted["val_scores"], x_val))
        if tracked is not None:  # the final figures, and the run's files
            tracked.log_metrics({k: v for k, v in metrics.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)},
                                step=metrics["epochs_run"])
            tracked.log_files(tmp)
    shutil.rmtree(partial_dir, ignore_errors=True)  # out holds the finished run
    if task != "classes":
        trainer.say(f"{target_summary(task, metrics)}. Wrote {out} in "
                    f"{metrics['seconds']:.0f} s.")
    elif config.linear:
        trainer.say(f"{config.head} (C={fitted['linear'].C_:g}): val_accuracy "
                    f"{metrics['best_val_accuracy']:.4f}. Wrote {out} in "
                    f"{metrics['seconds']:.0f} s.")
    else:
        trainer.say(f"Best epoch {metrics['best_epoch']}: val_accuracy "
                    f"{metrics['best_val_accuracy']:.4f}, val_loss "
                    f"{metrics['best_val_loss']:.4f}. Wrote {out} in "
                    f"{metrics['seconds']:.0f} s.")
    return {"model": model, "tuner": fitted["tuner"], "linear": fitted["linear"],
            "metrics": metrics, "config": run_config, "out": os.fspath(out)}


def placement_options(config):
    """What a resume need not match of where a run computes: its devices, unless rates scale."""
    return tuple(name for name in PLACEMENT_OPTIONS
                 if not (config.scale_lr and name == "devices"))


def _logged(kinds):
    """The files and folders of the live logs `kinds` in a run folder."""
    from transferkit.training.tracking import CSV_FILE, TENSORBOARD_DIR

    return [name for kind, name in (("csv", CSV_FILE), ("tensorboard", TENSORBOARD_DIR))
            if kind in kinds]


def _live_logs(trainer, partial_dir, completed, tracked=None):
    """The `--log` callbacks, writing into `partial_dir` as the epochs end.

    There they outlive an interruption, as the checkpoints do; the finished
    run moves them into its folder. A resumed run keeps the rows of its
    `completed` epochs and appends; a fresh one starts them again.
    """
    from transferkit.training.tracking import CSV_FILE, log_callbacks, trim_csv

    for name in _logged(("csv", "tensorboard")):
        path = os.path.join(partial_dir, name)
        if completed and name == CSV_FILE:
            trim_csv(path, completed)
        elif not completed and os.path.isdir(path):
            shutil.rmtree(path)
        elif not completed and os.path.exists(path):
            os.remove(path)
    callbacks = log_callbacks(trainer.config.log, partial_dir, tracked=tracked)
    if _logged(trainer.config.log):
        os.makedirs(partial_dir, exist_ok=True)
        trainer.say("Live logs, per epoch, until the run is written: "
                    + ", ".join(os.path.join(partial_dir, name)
                                for name in _logged(trainer.config.log)) + ".")
    return callbacks


def partial_folder(out):
    """The checkpoint folder of a run on `out`: `<out>.partial`, beside it."""
    return os.fspath(out).rstrip("/" + os.sep) + ".partial"


@contextlib.contextmanager
def _kept_when_interrupted(partial_dir):
    """On an error, removes `partial_dir` if this run made it and it holds no checkpoint.

    An interruption (Ctrl-C, SIGTERM) keeps it: its features and checkpoints
    are for the next run. Entered under the output lock.
    """
    from transferkit.training.resume import PartialRun

    created = not os.path.exists(partial_dir)
    try:
        yield
    except Exception:
        if created and PartialRun(partial_dir, None).latest() is None:
            shutil.rmtree(partial_dir, ignore_errors=True)
        raise
