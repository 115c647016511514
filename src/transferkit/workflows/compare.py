"""`compare`: several variants of one model on the same data, side by side.

Seed 004 (Chollet's IMDB experiment) trains an original network, a smaller
and a bigger one, one with L2 weight regularization and one with dropout, on
the same data, and overlays their validation losses: the bigger network
over-fits sooner, the smaller one later, L2 and dropout delay it. `compare`
runs that experiment for a pretrained backbone on an image folder. Every
variant trains on the same loaded images, the same train/validation split
and the same seed, so the differences come from the options alone: a
variant identical to the base repeats `train`'s numbers exactly.

Variants are `train`'s options that differ from a shared base, given by
preset name (`VARIANT_PRESETS`) or in a small TOML file (see `read_variants`):

```toml
[base]                 # options shared by all variants
epochs = [5, 10]

[variants.original]    # the base as it is

[variants.l2]
kernel = "l2:1e-4"

[variants.dropout]
dropout = 0.5
```

Example:

>>> result = compare("hymenoptera/train", "efficientnet_lite0", "runs/cmp",
...                  variants=["original", "l2", "dropout"])  # doctest: +SKIP
>>> result["variants"]["l2"]["best_val_loss"]  # doctest: +SKIP
"""

import dataclasses
import difflib
import os
import re
import tempfile
import time

from transferkit.data.tables import table_task
from transferkit.errors import TransferkitError
from transferkit.runs import (
    COMPARISON_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    jsonable,
)
from transferkit.training.config import (
    TrainingConfig,
    check_log_packages,
    check_names,
    training_config,
)
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
    scan_split,
    versions,
)

PLOT_FILE = COMPARISON_FILE
VARIANTS_DIR = "variants"

# Seed 004's variants, made to mean something for a pretrained backbone. The
# seed changes a dense network's width; here the trainable capacity of the
# fine-tuning phase plays that part (the head is a single Dense layer). These
# are compare's presets: not KerasHub's model presets, not layer presets.
VARIANT_PRESETS = {
    # The base options as they are.
    "original": {},
    # Less trainable capacity: phase 2 fine-tunes only the backbone's last block.
    "smaller": {"unfreeze": "blocks:1"},
    # More: phase 2 trains every weight, BatchNormalization's included (in
    # training mode, so its statistics follow the new data too).
    "bigger": {"unfreeze": "all", "batchnorm": "train"},
    # Seed 004's L2 weight regularization, on every kernel.
    "l2": {"kernel": "l2:1e-4"},
    # Seed 004's dropout of 0.5, before the classifier (train's default is 0.2).
    "dropout": {"dropout": 0.5},
}
PRESETS = VARIANT_PRESETS  # the former name

# Options that every variant must share: they decide which arrays are loaded
# (image size, crop), which model is compared (backbone) or the seed.
SHARED = ("backbone", "seed", "image_size", "crop", "max_length", "devices",
          "model_parallel")
# What a TOML file may set: train's options, less the arguments of `compare`.
BASE_OPTIONS = tuple(a for a in TrainingConfig.names() if a not in ("backbone", "seed"))
VARIANT_OPTIONS = tuple(a for a in TrainingConfig.names() if a not in SHARED)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


@accepts_distribution
def compare(data_dir, backbone, out=None, *, variants=None, config=None, val=None,
            val_split=0.2, seed=0, cache_dir=None, strict=False, overwrite=False,
            save_models=False, report=True, columns=None, table=None, verbose="auto",
            **base_options):
    """Trains variants of one model on the same data, split and seed; compares them.

    Each variant is `train`'s recipe with the base options updated by the
    variant's: `TrainingConfig(backbone, **base, **variant)`, trained by
    `Trainer`. The images are read once; the train/validation split (from
    `val`, or a stratified
    `val_split` of `data_dir` drawn with `seed`) and the seed are the same
    for every variant. While a variant's first phase trains a frozen,
    unaugmented backbone, its features come from a `FeatureCache` shared by
    all the variants (computed once when the backbones start from the same
    weights).

    The base options are, from lowest to highest precedence, `train`'s
    defaults, the TOML file's `[base]`, and `**base_options`. Every option
    is checked, for every variant, before any image is read.

    For each variant the comparison reports the best epoch (lowest
    validation loss, whose weights `train` would keep), the validation loss
    and accuracy there and at the last epoch, the epochs run, and the
    diagnosis of its history (`transferkit.diagnose`: over-fitting onset and
    verdict). The table is printed; with `out`, a folder is written complete
    or not at all: `comparison.png` (validation loss per epoch of every
    variant, training loss beside it), `metrics.json` (the table, each
    variant's full diagnosis, image counts), `history.json` (every variant's
    history and phases), `config.json` (`"command": "compare"`, and under
    `"arguments"` everything that `compare(**config["arguments"])` needs to
    run the comparison again, the variants resolved to their options) and
    `features/` (unless `cache_dir`). The models are not saved, unless
    `save_models=True`: then `variants/<name>/model.keras`.

    Presets (`VARIANT_PRESETS`), seed 004's set made to mean something for a
    pretrained backbone:

    - `"original"`: the base options as they are.
    - `"smaller"`: less trainable capacity, `unfreeze="blocks:1"` (phase 2
      fine-tunes only the backbone's last block).
    - `"bigger"`: more, `unfreeze="all", batchnorm="train"` (every weight
      trains in phase 2, BatchNormalization's included). Identical to the
      original when the base already sets both; `compare` says so.
    - `"l2"`: L2 weight regularization, `kernel="l2:1e-4"`.
    - `"dropout"`: `dropout=0.5` before the classifier.

    Args:
        data_dir: the training images, one subfolder per class; for a text
            backbone, a labelled text file (`columns`, a `TextColumns`, says
            where its texts and labels are; see `train`).
        backbone: a catalogue image backbone, the same for every variant.
        out: optional folder to write (see above). Defaults to `None`
            (nothing written; shared features live in a temporary folder).
        variants: preset names (a list, or a comma-separated string); with
            `config`, names of the file's variants to run (a subset, in this
            order); or a dict `{name: {option: value}}`. Defaults to every
            variant of `config`, or without it every preset.
        config: optional TOML file with `[base]` and `[variants.NAME]`
            tables (see `read_variants`).
        val: optional folder of validation images (same classes).
        val_split: the share of `data_dir` held out when `val` is `None`.
            Defaults to `0.2`.
        seed: seeds the split and every variant's training. Defaults to 0.
        cache_dir: a feature-cache folder shared with other runs.
        strict: a file that does not decode is an error instead of skipped.
        overwrite: replace `out` if it is a previous `compare` run or an
            empty folder. Defaults to `False`.
        save_models: also write each variant's model (best epoch's weights)
            to `out`'s `variants/<name>/model.keras`. Defaults to `False`.
        report: with `out`, also write `report.html` and `report.json`
            (`transferkit.write_report`). Defaults to `True`.
        table: a `LabelTable` labelling the images by a table (see `train`):
            for multi-label and numeric targets the rows then hold their
            validation figures (mAP and F1, or RMSE, MAE and R²), the
            accuracy columns none.
        distribution: a `tf.distribute.Strategy` or `keras.distribution.Distribution` you made,
            used instead of `devices` (`transferkit.training.distribution.using`). Defaults
            to `None`.
        verbose: Keras' verbosity; `0` also silences the table. Defaults to
            `"auto"`.
        **base_options: `train`'s model and training options shared by all
            variants (`epochs`, `learning_rate`, `unfreeze`, `augment`,
            `image_size`, `batch_size`, `patience`, `weights`, ...).

    Returns:
        A dict: `variants` (`{name: row}`, each row the figures above plus
        `options`, the variant's own options, and `diagnosis`, a dict),
        `histories` (`{name: {"history": ..., "phases": ...}}`), `base` (the
        resolved base options), `train_images`, `val_images`, `out`.

    Example:

    >>> result = compare("hymenoptera/train", "efficientnet_lite0",
    ...                  variants=["original", "smaller", "l2"],
    ...                  epochs=(3, 5))  # doctest: +SKIP
    >>> {name: row["verdict"] for name, row in result["variants"].items()}  # doctest: +SKIP
    """
    from transferkit.outputs import check_output_folder, output_folder

    start = time.perf_counter()
    # Everything that can be wrong is checked before the first image is read.
    check_names(base_options, BASE_OPTIONS, "compare")
    devices = devices_of(backbone, base_options)
    modality = modality_of(backbone, devices)
    if is_follower(devices):  # trains with process 0, which alone writes
        return as_follower(compare, data_dir=data_dir, backbone=backbone, out=out,
                           variants=variants, config=config, val=val, val_split=val_split,
                           seed=seed, cache_dir=cache_dir, strict=strict, overwrite=overwrite,
                           save_models=save_models, report=report, columns=columns,
                           table=table, verbose=verbose, **base_options)
    check_data((data_dir, val), modality)
    check_table(table, modality == "text")
    inputs = (data_dir, val, config, cache_dir)
    if out is not None:
        check_output_folder(out, "compare", inputs=inputs, overwrite=overwrite)
    if val is None and (isinstance(val_split, bool) or not isinstance(val_split, (int, float))
                        or not 0 < val_split < 1):
        raise TransferkitError(f"val_split must be in (0, 1), like 0.2; got {val_split!r}.")
    if not isinstance(save_models, bool):
        raise TransferkitError(f"save_models must be True or False, got {save_models!r}.")
    file_base, chosen = {}, resolve_variants(variants, config)
    if config is not None:
        file_base, _ = read_variants(config)
    base = {**file_base, **base_options}
    # Each variant is the base configuration with its changes: dataclasses.replace.
    base_where = f"{os.fspath(config)}, [base]" if file_base else "The base options"
    # Variants of a network recipe: head "auto" is a softmax head here.
    base_config = _config(backbone, {**base, "seed": seed}, base_where).for_data(None)
    check_log_packages(base_config.log)
    configs = {name: _config(base_config, options, where)
               for name, (options, where) in chosen.items()}
    _trainer(base_config, base_where, verbose)
    # The training modules (Keras) once the options are known to be right.
    from transferkit.evaluation.diagnosis import diagnose
    from transferkit.runs import write_json
    from transferkit.training import resume
    from transferkit.training.features import FeatureCache
    from transferkit.training.tracking import log_callbacks, mlflow_run
    from transferkit.training.trainer import Trainer

    trainers = {name: _trainer(configs[name], chosen[name][1], verbose) for name in configs}
    first = next(iter(trainers.values()))
    say_source(first)
    _say_duplicates(first, configs)
    cache_dir = checked_cache_dir(cache_dir)

    with output_folder(out, "compare", inputs=inputs, overwrite=overwrite) as tmp, \
            mlflow_run(base_config.log, base_config.mlflow_uri,
                       f"compare {os.fspath(out if out is not None else data_dir)}") as tracked:
        if tracked is not None:
            tracked.log_params({"command": "compare", "data": os.fspath(data_dir),
                                "variants": ",".join(trainers), **base_config.to_dict()})
        folder, train_set, val_set = scan_split(data_dir, val, val_split, seed, strict,
                                                text=first.text, columns=columns, table=table)
        task = table_task(train_set)
        for trainer in trainers.values():
            trainer.config.for_task(task)
        if first.text:
            # The tokens per text, chosen once from the training texts, for every variant.
            first = first.for_texts(train_set.texts)
            trainers = {name: t if t.config.max_length else
                        Trainer(dataclasses.replace(t.config, max_length=first.size),
                                verbose=verbose) for name, t in trainers.items()}
        num_classes = len(train_set.class_names)
        noun = first.noun
        shape, input_config = input_description(first)
        first.say(f"{len(train_set)} training {noun}, {len(val_set)} validation {noun}, "
                  f"{TARGET_NOUNS[task]} {train_set.class_names}; {shape}; "
                  f"{len(trainers)} variants: {', '.join(trainers)}.")
        if task == "classes" and all(t.config.class_weight is None for t in trainers.values()):
            first.skew_hint(train_set.labels, train_set.class_names)
        # Streamed: decoded batch by batch, never all in memory.
        (x_train, train_files), y_train = model_inputs(first, train_set), train_set.labels
        (x_val, val_files), y_val = model_inputs(first, val_set), val_set.labels

        def run_variants(cache, where, models_dir, logs=None):
            rows, histories = {}, {}
            for index, (name, trainer) in enumerate(trainers.items()):
                trainer.say(f"Variant {index + 1}/{len(trainers)}: {name} "
                            f"({_describe(chosen[name][0])}).")

                def features(extractor, trainer=trainer):
                    return (trainer.features(cache, extractor, x_train, train_files, "training",
                                             where),
                            trainer.features(cache, extractor, x_val, val_files, "validation",
                                             where))

                # Epochs seeded as train seeds them: a variant equal to the base
                # repeats train's numbers.
                fitted = trainer.fit(x_train, y_train, x_val, y_val, num_classes,
                                     features=features, class_names=train_set.class_names,
                                     task=task,
                                     partial=resume.PartialRun(None, None,
                                                               seed=trainer.config.seed),
                                     callbacks=log_callbacks(base_config.log, logs,
                                                             columns={"variant": name},
                                                             name=name, tracked=tracked))
                history = fitted["history"]["history"]
                diagnosis = diagnose(history, num_classes=num_classes if task == "classes"
                                     else None, monitor=trainer.config.monitor)
                best = fitted["metrics"]["best_epoch"] - 1
                accuracy = history.get("val_accuracy") or [None] * len(history["val_loss"])
                rows[name] = {
                    "options": dict(chosen[name][0]),
                    "best_epoch": best + 1,
                    "best_val_loss": history["val_loss"][best],
                    "best_val_accuracy": accuracy[best],
                    "last_val_loss": history["val_loss"][-1],
                    "last_val_accuracy": accuracy[-1],
                    "epochs_run": len(history["val_loss"]),
                    # The kept epoch's figures for skewed classes, labels or numbers.
                    **{key: fitted["metrics"][key] for key in (
                        "val_macro_f1", "val_balanced_accuracy", "val_micro_f1",
                        "val_mean_average_precision", "val_mae", "val_rmse", "val_r2",
                        "thresholds") if key in fitted["metrics"]},
                    "overfitting_onset": diagnosis.overfitting_onset,
                    "verdict": diagnosis.verdict,
                    "diagnosis": diagnosis.to_dict(),
                }
                histories[name] = fitted["history"]
                if models_dir is not None:
                    os.makedirs(os.path.join(models_dir, name))
                    fitted["model"].save(os.path.join(models_dir, name, MODEL_FILE))
                del fitted  # one model in memory at a time
            return rows, histories

        resolved = {name: {k: jsonable(v) for k, v in options.items()}
                    for name, (options, _) in chosen.items()}
        arguments = {"data_dir": data_dir, "backbone": backbone, "out": out, "variants": resolved,
                     "val": val, "val_split": val_split, "seed": seed, "cache_dir": cache_dir,
                     "strict": strict, "save_models": save_models, "report": report,
                     **({"table": dataclasses.asdict(table)} if task != "classes"
                        or (table is not None and table.labels is not None) else {}),
                     **base}
        summary = {"base": {k: jsonable(v) for k, v in base.items()},
                   f"train_{noun}": len(train_set), f"val_{noun}": len(val_set)}
        if out is None:
            with tempfile.TemporaryDirectory(prefix="transferkit-compare-") as scratch:
                rows, histories = run_variants(FeatureCache(cache_dir or scratch),
                                               cache_dir or "a temporary folder", None)
        else:
            if log_callbacks(base_config.log, tmp):
                first.say(f"Live logs, per epoch, until {out} is written: {tmp}.")
            rows, histories = run_variants(
                FeatureCache(cache_dir or os.path.join(tmp, FEATURES_DIR)),
                cache_dir or os.path.join(os.fspath(out), FEATURES_DIR),
                os.path.join(tmp, VARIANTS_DIR) if save_models else None, logs=tmp)
            skipped = folder.skipped + (val_set.skipped if val is not None else [])
            write_json(os.path.join(tmp, METRICS_FILE), {
                "variants": rows, **summary,
                **({"skipped_rows": [line for line, _ in skipped]} if first.text
                   else {"skipped_files": [str(p) for p, _ in skipped]}),
                "seconds": round(time.perf_counter() - start, 1)})
            write_json(os.path.join(tmp, HISTORY_FILE), {"variants": histories})
            write_json(os.path.join(tmp, CONFIG_FILE), {
                "command": "compare",
                "arguments": {k: jsonable(v) for k, v in arguments.items()},
                "config_file": None if config is None else os.fspath(config),
                "training": {name: c.to_dict() for name, c in configs.items()},
                "class_names": list(train_set.class_names),
                "task": task,
                **input_config,
                **backbone_record(first),
                "versions": versions()})
            plot_comparison({name: h["history"] for name, h in histories.items()},
                            os.path.join(tmp, PLOT_FILE),
                            title=f"{first.backbone.name} on "
                            f"{os.path.basename(os.path.abspath(data_dir))}")
            if report and task != "classes":
                first.say("report.html covers classes; metrics.json has every variant's "
                          "figures.")
            elif report:
                from transferkit.evaluation.report import write_report

                write_report(tmp, location=out)
            if tracked is not None:
                tracked.log_files(tmp)
    first.say(format_table(rows))
    first.say(f"{len(rows)} variants compared in {time.perf_counter() - start:.0f} s"
              + (f"; wrote {out}." if out is not None else "."))
    return {"variants": rows, "histories": histories, **summary,
            "out": None if out is None else os.fspath(out)}


def read_variants(path):
    """Reads a variants file: `(base options, {name: options})`.

    The file is TOML with two tables, both optional: `[base]`, `train`'s
    options shared by every variant (`BASE_OPTIONS`: all but `backbone` and
    `seed`, which `compare` takes), and `[variants.NAME]`, one table per
    variant, in the order compared, with the options it changes
    (`VARIANT_OPTIONS`: not `image_size` or `crop` either, as every variant
    trains on the same arrays). An empty table is the base as it is. Option
    names are `train`'s keyword arguments (`learning_rate`, not `--lr`);
    values are checked when `compare` builds each variant. Mistakes are
    reported in one line naming the file, the table and the line.

    Example:

    >>> base, variants = read_variants("variants.toml")  # doctest: +SKIP
    >>> variants["l2"]  # doctest: +SKIP
    {'kernel': 'l2:1e-4'}
    """
    import tomllib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TransferkitError(f"No such variants file: {path}.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise TransferkitError(f"{path} is not UTF-8 text; save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as e:
        raise TransferkitError(f"{path} is not valid TOML: {e}.") from None

    def fail(table, key, message):
        line = _line_of(text, table, key)
        where = f"{path}, line {line}" if line else path
        raise TransferkitError(f"{where}, [{table}]: {message}")

    for key in data:
        if key not in ("base", "variants"):
            fail(key, None, "unknown table; a variants file has [base] and "
                 "[variants.NAME] tables.")
    base = data.get("base", {})
    if not isinstance(base, dict):
        fail("base", None, "base must be a table of options, like [base] epochs = [5, 10].")
    _check_options(base, BASE_OPTIONS, "base", fail)
    variants = data.get("variants", {})
    if not isinstance(variants, dict):
        fail("variants", None, "variants must hold tables, like [variants.l2].")
    if not variants:
        raise TransferkitError(f"{path} defines no variants; add tables like [variants.l2].")
    for name, options in variants.items():
        table = f"variants.{name}"
        if not isinstance(options, dict):
            fail(table, None, f"variant {name!r} must be a table of options, like "
                 f"[variants.{name}] followed by option = value lines.")
        _check_name(name, lambda message: fail(table, None, message))
        _check_options(options, VARIANT_OPTIONS, table, fail)
    return base, variants


def resolve_variants(variants=None, config=None):
    """The variants to compare: `{name: (options, where)}`, checked.

    `where` names the variant's origin in error messages. See `compare`'s
    `variants` and `config` for the forms accepted.

    Example:

    >>> {name: options for name, (options, _) in resolve_variants(["original", "l2"]).items()}
    {'original': {}, 'l2': {'kernel': 'l2:1e-4'}}
    """
    if config is not None:
        _, available = read_variants(config)
        source = os.fspath(config)
        known = f"{source} defines {', '.join(available)}"
    else:
        available, source = VARIANT_PRESETS, None
        known = f"the presets are {', '.join(VARIANT_PRESETS)}"
    if isinstance(variants, dict):
        if config is not None:
            raise TransferkitError(
                "With config, give variants as names of the file's variants, not a dict."
            )
        chosen = {}
        for name, options in variants.items():
            _check_name(name, _raise)
            options = {} if options is None else options
            if not isinstance(options, dict):
                raise TransferkitError(
                    f"Variant {name!r}: options must be a dict like {{'kernel': 'l2:1e-4'}}, "
                    f"got {options!r}."
                )
            _check_options(options, VARIANT_OPTIONS, f"variant {name!r}",
                           lambda _, __, message: _raise(f"Variant {name!r}: {message}"))
            chosen[name] = (dict(options), f"variant {name!r}")
        names = list(chosen)
    else:
        if variants is None:
            names = list(available)
        elif isinstance(variants, str):
            names = [n.strip() for n in variants.split(",")]
        elif isinstance(variants, (list, tuple)):
            names = list(variants)
        else:
            raise TransferkitError(
                f"variants must be names like ['original', 'l2'] or a dict of options, got "
                f"{variants!r}."
            )
        chosen = {}
        for name in names:
            if not isinstance(name, str) or name not in available:
                hint = difflib.get_close_matches(str(name), list(available), n=1)
                raise TransferkitError(
                    f"Unknown variant {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint
                                                   else "") + f"; {known}."
                )
            if name in chosen:
                raise TransferkitError(f"Variant {name!r} is listed twice; name each once.")
            where = (f"{source}, [variants.{name}]" if config is not None
                     else f"preset {name!r}")
            chosen[name] = (dict(available[name]), where)
    if not chosen:
        raise TransferkitError("No variants to compare; name at least one, like original.")
    return chosen


def format_table(rows):
    """The comparison as a text table: one row a variant.

    Example:

    >>> print(format_table({"l2": {"best_epoch": 3, "best_val_loss": 0.41,
    ...     "best_val_accuracy": 0.8, "last_val_loss": 0.45, "last_val_accuracy": 0.79,
    ...     "epochs_run": 5, "overfitting_onset": None, "verdict": "good fit",
    ...     "options": {"kernel": "l2:1e-4"}}}))  # doctest: +NORMALIZE_WHITESPACE
    variant  best epoch  best val_loss  best val_acc  last val_loss  last val_acc  onset  verdict   options
    l2       3 of 5         0.4100        0.8000         0.4500        0.7900      -  good fit  kernel=l2:1e-4
    """
    header = ["variant", "best epoch", "best val_loss", "best val_acc", "last val_loss",
              "last val_acc", "onset", "verdict", "options"]
    lines = [header]
    for name, row in rows.items():
        onset = row.get("overfitting_onset")
        lines.append([name, f"{row['best_epoch']} of {row['epochs_run']}",
                      _number(row["best_val_loss"]), _number(row["best_val_accuracy"]),
                      _number(row["last_val_loss"]), _number(row["last_val_accuracy"]),
                      "-" if onset is None else str(onset), row["verdict"],
                      _describe(row["options"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    # Text columns (the name, verdict, options) are left-aligned, figures right-aligned.
    return "\n".join("  ".join(cell.ljust(w) if i in (0, 7, 8) else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def plot_comparison(histories, path, *, title=None):
    """Plots every variant's validation loss per epoch, training loss beside it.

    Args:
        histories: `{variant name: history}`, each a dict of per-epoch lists
            (`val_loss`, `loss`), e.g. `FineTuner.history_`.
        path: the `.png` file to write.
        title: optional figure title.

    Example:

    >>> plot_comparison({"original": {"loss": [0.6, 0.4], "val_loss": [0.7, 0.6]},
    ...                  "l2": {"loss": [0.7, 0.5], "val_loss": [0.7, 0.55]}},
    ...                 "comparison.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), layout="constrained")
    for index, (key, label) in enumerate((("val_loss", "validation loss"),
                                          ("loss", "training loss"))):
        axes = figure.add_subplot(1, 2, index + 1)
        for name, history in histories.items():
            points = [(e + 1, v) for e, v in enumerate(history.get(key) or []) if v is not None]
            if points:
                axes.plot(*zip(*points), marker="o", markersize=3, label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if histories:
            axes.legend()
    if title:
        figure.suptitle(title)
    figure.savefig(os.fspath(path), dpi=100)


def _config(base, options, where):
    """`training_config(base, options)`; a mistake in the options names the variant."""
    try:
        return training_config(base, options, where)
    except (TransferkitError, TypeError) as e:
        if isinstance(e, TypeError):
            e = f"an option has the wrong type ({e})."
        raise TransferkitError(f"{where}: {e}") from None


def _trainer(config, where, verbose):
    """The variant's `Trainer`: a configuration that trains a network."""
    from transferkit.training.trainer import Trainer

    trainer = Trainer(config, verbose=verbose)
    if trainer.config.linear:
        raise TransferkitError(
            f"{where}: head={trainer.config.head!r} trains no network, so there are no curves to "
            "compare; use head='softmax'."
        )
    return trainer


def _check_options(options, allowed, table, fail):
    for key, value in options.items():
        if key in SHARED and key not in allowed:
            fail(table, key, f"{key} must be the same for every variant; set it in [base] "
                 "or as an argument of compare." if key not in ("backbone", "seed")
                 else f"{key} is an argument of compare (--{key}), the same for every "
                 "variant.")
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            fail(table, key, f"unknown option {key!r}"
                 + (f" (did you mean {hint[0]!r}?)" if hint else "")
                 + f"; use train's options: {', '.join(allowed)}.")
        if isinstance(value, dict) and key != "augment":
            fail(table, key, f"{key} must be a value, not a table.")


def _check_name(name, fail):
    if not isinstance(name, str) or not _NAME.match(name):
        fail(f"The variant name {name!r} must be letters, digits, '_', '.' or '-' (it names "
             "a folder).")


def _line_of(text, table, key):
    """The line of `key` in `[table]` (of the table's header without a key), or `None`."""
    current, header = "", None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = re.sub(r"[\s\"']", "", stripped.split("#")[0].strip("[] \t"))
            current = current.rstrip("]")
            if header is None and (current == table or current.startswith(table + ".")):
                header = number
            continue
        if key is not None and current == table and re.match(
                rf"[\"']?{re.escape(key)}[\"']?\s*=", stripped):
            return number
    return header


def _say_duplicates(trainer, configs):
    seen = {}
    for name, config in configs.items():
        key = repr(config)
        if key in seen:
            trainer.say(f"Note: variant {name} has the same options as {seen[key]}; it will "
                        "repeat its numbers.")
        else:
            seen[key] = name


def _describe(options):
    return ", ".join(f"{k}={jsonable(v)}" for k, v in options.items()) or "-"


def _number(value):
    return "-" if value is None else f"{value:.4f}"


def _raise(message):
    raise TransferkitError(message)
