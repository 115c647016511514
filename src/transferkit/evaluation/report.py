"""One self-contained HTML page per run: figures, diagnosis, curves, mistakes.

`write_report` reads a run folder (`transferkit train` or `transferkit cv`)
and writes `report.html` into it: a single file that opens offline in any
browser and can be mailed or attached as it is (no external CSS, scripts or
fonts; the images are embedded as `data:` URIs). Beside it, `report.json`
holds the same numbers for programs.

The page shows a title (backbone, data, date), the metrics, the diagnosis of
the training curves (`diagnose_run`) when the run has epochs, the curves
(`curves.png`), each fold's figures with their mean and standard deviation
for a cv run, and the configuration (the arguments, the phases). Given a
labelled image folder for a train run (by default the run's own `--val`
folder, when it still exists), it also shows the confusion matrix and the
worst-classified examples: the images with the lowest probability for their
true class, as thumbnails of what the model saw.

Example:

>>> path = write_report("runs/ants")  # doctest: +SKIP
>>> path  # doctest: +SKIP
'runs/ants/report.html'
"""

import base64
import datetime
import html
import io
import numbers
import os
import re

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.progress import Progress
from transferkit.runs import (
    COMPARISON_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    REPORT_FILE,
    read_json,
    write_json,
)

REPORT_JSON_FILE = "report.json"
THUMBNAIL_SIZE = 128  # pixels, the longer side of a worst-example thumbnail

# The metrics.json entries shown first, in this order, with their labels.
_METRIC_LABELS = {
    "best_val_accuracy": "best validation accuracy",
    "best_val_loss": "best validation loss",
    "final_val_accuracy": "final validation accuracy",
    "last_epoch_val_accuracy": "last epoch's validation accuracy",
    "val_balanced_accuracy": "validation balanced accuracy (mean recall)",
    "val_macro_f1": "validation macro-F1",
    "val_roc_auc": "validation ROC-AUC",
    "val_pr_auc": "validation PR-AUC (average precision)",
    "best_epoch": "best epoch",
    "epochs_run": "epochs run",
    "C": "C (inverse regularization)",
    "train_images": "training images",
    "val_images": "validation images",
    "train_texts": "training texts",
    "val_texts": "validation texts",
    "images": "images",
    "seconds": "seconds",
}


# Characters of a worst-classified text shown in the page (report.json has them all).
_TEXT_SHOWN = 1000


def write_report(run_dir, *, data_dir=None, worst=12, location=None, evaluated=None):
    """Writes `report.html` and `report.json` into a run folder.

    Both files are written atomically (temporary names beside them, then
    renames): a reader sees the previous report or the complete new one, and
    an error while writing leaves the previous pair as it was.

    Args:
        run_dir: a run folder written by `transferkit train`, `cv` or
            `compare` (`--out`). Those commands write the report themselves.
        data_dir: a labelled image folder (one subfolder per class, among
            the run's classes), or an `ImageFolder` (e.g. a held-out split),
            to evaluate a train run on, for the confusion matrix and the
            worst-classified examples. Defaults to the run's validation
            folder (`--val`) when it was given and still exists; without
            one, those sections are left out. cv and compare runs have no
            saved model, so they take no `data_dir`.
        worst: how many worst-classified examples to show, an int >= 0.
            Defaults to 12; 0 shows none.
        location: the run folder's path to show in the report, when it is
            written into a temporary folder first. Defaults to `run_dir`.
        evaluated: optional `(scores, images)` for the images of `data_dir`
            (which it then requires), when the caller has them already, as
            `transferkit train` does: `scores`, the run model's class
            scores `(n, classes)` as `inference.class_scores` gives them,
            and `images`, the images `(n, height, width, 3)` they were
            computed on (an array, or a `transferkit.data.stream.ImageFiles`:
            only the thumbnails are decoded), both in the folder's file
            order. The model is then not loaded; the report is the same.
            Defaults to `None`: computed here.

    Returns:
        The path of the `report.html` written. `report.json` holds
        `command`, `backbone`, `head`, `data`, `date` (when the run
        finished), `class_names`, `metrics` (metrics.json), `folds` (a cv
        run's per-fold rows, mean and std), `diagnosis` (`Diagnosis.to_dict()`,
        a list for a cv run, `None` without epochs), `config` (arguments,
        phases), `evaluation` (as `inference.evaluate` returns it, plus
        `data_dir`) and `worst` (`path`, `true_class`, `predicted_class`,
        `true_class_probability`, `probabilities`; `score`s for a linear SVM
        head); the last two are `None` without `data_dir`.

    Example:

    >>> write_report("runs/ants", data_dir="hymenoptera/val", worst=8)  # doctest: +SKIP
    'runs/ants/report.html'
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TransferkitError(f"run_dir must be a folder path; got {type(run_dir).__name__}.")
    if isinstance(worst, bool) or not isinstance(worst, numbers.Integral) or worst < 0:
        raise TransferkitError(f"worst must be an int >= 0, like 12; got {worst!r}.")
    path = os.fspath(run_dir)
    if not os.path.isdir(path):
        raise TransferkitError(f"No run folder {path}; pass the --out folder of "
                               "`transferkit train` or `transferkit cv`.")
    from transferkit.data.images import ImageFolder
    from transferkit.data.text import TextFile

    if data_dir is not None and not isinstance(data_dir,
                                               (str, os.PathLike, ImageFolder, TextFile)):
        raise TransferkitError(f"data_dir must be a folder path; got {type(data_dir).__name__}.")
    if isinstance(data_dir, (str, os.PathLike)):
        if _is_text_run(path):
            from transferkit.data.text import check_text_file

            check_text_file(data_dir)
        elif not os.path.isdir(data_dir):
            raise TransferkitError(f"No such image folder: {os.fspath(data_dir)}; check --data.")
    if evaluated is not None:
        if not isinstance(evaluated, (tuple, list)) or len(evaluated) != 2:
            raise TransferkitError("evaluated must be a pair (scores, images); got "
                                   f"{type(evaluated).__name__}.")
        if data_dir is None:
            raise TransferkitError("evaluated needs data_dir: the folder whose images (or the "
                                   "texts) it scores.")

    from transferkit.outputs import atomic_output, friendly_write_errors

    report, thumbnails = _collect(path, data_dir, int(worst), evaluated)
    if location is not None:
        report["run_dir"] = os.path.abspath(os.fspath(location))
    page = _render(report, thumbnails, path)
    target = os.path.join(path, REPORT_FILE)
    # Both under temporary names first: an error in either replaces neither.
    with friendly_write_errors(os.path.join(location or path, REPORT_FILE)), \
            atomic_output(os.path.join(path, REPORT_JSON_FILE)) as json_tmp, \
            atomic_output(target) as html_tmp:
        write_json(json_tmp, report)
        with open(html_tmp, "w", encoding="utf-8") as f:
            f.write(page)
    return target


# --------------------------------------------------------------------------
# Collecting the numbers.


def _collect(path, data_dir, worst, evaluated=None):
    """`(report.json's dict, the worst examples' pixels)`; `evaluated` as in `write_report`."""
    config = read_json(os.path.join(path, CONFIG_FILE))
    metrics = read_json(os.path.join(path, METRICS_FILE))
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise TransferkitError(f"{path}: config.json and metrics.json must hold JSON objects; "
                               "is this a transferkit run folder?")
    command = config.get("command")
    if command not in ("train", "cv", "compare"):
        raise TransferkitError(f"{os.path.join(path, CONFIG_FILE)}: command is {command!r}; "
                               "a report needs a `transferkit train`, `cv` or `compare` run.")
    task = config.get("task", "classes")
    if task != "classes":
        raise TransferkitError(
            f"{path} predicts {'labels' if task == 'multilabel' else 'numbers'}: report.html "
            "covers classes; metrics.json has its figures, and `transferkit evaluate RUN "
            "DATA --labels TABLE` scores it on other data.")
    arguments = config.get("arguments") if isinstance(config.get("arguments"), dict) else {}
    data = arguments.get("data_dir")
    written = datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(path, METRICS_FILE)))
    report = {
        "run_dir": os.path.abspath(path),
        "command": command,
        "backbone": config.get("backbone"),
        "head": config.get("head"),
        "data": data,
        "date": written.isoformat(timespec="seconds"),
        "class_names": config.get("class_names"),
        "metrics": metrics,
        "folds": None,
        "diagnosis": None,
        "config": {"arguments": arguments, "phases": config.get("phases"),
                   "augmentation": config.get("augmentation"),
                   "versions": config.get("versions")},
        "evaluation": None,
        "worst": None,
    }
    if command == "cv":
        report["folds"] = {k: metrics.get(k) for k in ("folds", "mean", "std")}
    if command == "compare":
        rows = metrics.get("variants") if isinstance(metrics.get("variants"), dict) else {}
        report["variants"] = {name: {k: v for k, v in row.items() if k != "diagnosis"}
                              for name, row in rows.items()}
        report["diagnosis"] = {name: row.get("diagnosis") for name, row in rows.items()
                               if isinstance(row.get("diagnosis"), dict)}
        if data_dir is not None:
            raise TransferkitError(f"{path} is a compare run: it saves no model to evaluate "
                                   "(--data); give a train run.")
        return report, []
    report["diagnosis"] = _diagnosis(path)

    if data_dir is None and command == "train":
        val = arguments.get("val")
        if isinstance(val, str) and (os.path.isfile(val) if config.get("max_length")
                                     else os.path.isdir(val)):
            data_dir = val
    if data_dir is not None:
        if command != "train":
            raise TransferkitError(f"{path} is a cv run: it saves no model to evaluate on "
                                   "data_dir (--data); give a train run.")
        evaluation, examples, images = _evaluate(path, data_dir, worst, config, evaluated)
        report["evaluation"] = evaluation
        report["worst"] = examples
        return report, images
    return report, []


def _diagnosis(path):
    """`diagnose_run`'s dicts, or `None` when the run has no epochs (a linear head)."""
    from transferkit.evaluation.diagnosis import diagnose_run

    history = read_json(os.path.join(path, HISTORY_FILE))
    entries = history.get("folds") if isinstance(history, dict) else None
    entries = entries if isinstance(entries, list) else [history]
    if not all(isinstance(e, dict) and isinstance(e.get("history"), dict) for e in entries):
        return None  # a C search (linear head), not a training curve
    result = diagnose_run(path)
    return [d.to_dict() for d in result] if isinstance(result, list) else result.to_dict()


def _evaluate(path, data_dir, worst, config, evaluated=None):
    """`inference.evaluate`'s figures, plus the `worst` examples and their pixels.

    The images are read once: the same array gives the predictions and the
    thumbnails (what the model saw, at the run's image size and crop). With
    `evaluated` (see `write_report`), neither the model nor the images are
    read: the caller's scores and images stand for them.
    """
    from transferkit.data.images import scan_image_folder
    from transferkit.data.stream import ImageFiles, read_ahead
    from transferkit.evaluation.inference import class_scores, load_run

    if config.get("max_length") is not None:
        return _evaluate_texts(path, data_dir, worst, config, evaluated)
    # The folder is checked against the run's classes before the (slow) model load.
    known = list(config.get("class_names") or [])
    folder = data_dir if hasattr(data_dir, "files") else scan_image_folder(data_dir)
    _check_classes(folder.root, folder.class_names, known)
    if evaluated is None:
        run = load_run(path)
        class_names, outputs = run.class_names, run.outputs
        x = ImageFiles(folder.files, run.image_size, crop=run.crop)  # streamed
        with Progress(len(x), "Scoring the validation images", unit="images") as progress:
            scores = []
            for _, batch in read_ahead(x, 32):
                scores.append(class_scores(run, batch))
                progress.update(len(batch))
        scores = np.concatenate(scores)
    else:
        class_names, outputs = known, config.get("outputs", "probabilities")
        scores, x = _checked_evaluated(evaluated, folder, len(class_names))
    labels = np.array([class_names.index(folder.class_names[i]) for i in folder.labels])
    where = os.path.abspath(folder.root if hasattr(data_dir, "files") else data_dir)
    evaluation, examples, order = _figures(
        scores, labels, class_names, outputs, worst, where, folder.skipped, "images",
        lambda i: {"path": os.fspath(folder.files[i])})
    return evaluation, examples, [x[i] for i in order]


def _check_classes(where, found, known):
    unknown = sorted(set(found) - set(known))
    if unknown:
        raise TransferkitError(f"{os.fspath(where)} has classes the model was not trained "
                               f"on: {unknown}; it knows {known}.")


def _is_text_run(path):
    config = read_json(os.path.join(path, CONFIG_FILE))
    return isinstance(config, dict) and config.get("max_length") is not None


def _evaluate_texts(path, data, worst, config, evaluated=None):
    """`_evaluate` for a text run: the worst examples are texts, without pixels."""
    from transferkit.data.text import TextFile, read_text_file
    from transferkit.evaluation.inference import load_run, text_scores
    from transferkit.training.config import TextColumns

    known = list(config.get("class_names") or [])
    if not isinstance(data, TextFile):
        columns = (config.get("arguments") or {}).get("columns") or {}
        data = read_text_file(data, **TextColumns(**columns).read_arguments())
    _check_classes(data.path, data.class_names, known)
    if evaluated is None:
        run = load_run(path)
        outputs = run.outputs
        scores = text_scores(run, data.texts)
    else:
        outputs = config.get("outputs", "probabilities")
        scores = np.asarray(evaluated[0])
        expected = (len(data.texts), len(known))
        if scores.shape != expected or not np.issubdtype(scores.dtype, np.number) \
                or len(evaluated[1]) != len(data.texts):
            raise TransferkitError(
                f"evaluated must be the scores {expected} and the {len(data.texts)} texts of "
                f"{os.fspath(data.path)}; got scores {scores.dtype} {scores.shape}.")
    labels = np.array([known.index(data.class_names[i]) for i in data.labels])
    evaluation, examples, _ = _figures(
        scores, labels, known, outputs, worst, os.path.abspath(data.path), data.skipped, "texts",
        lambda i: {"path": os.fspath(data.path), "line": data.lines[i] if data.lines else None,
                   "text": data.texts[i]})
    return evaluation, examples, []


def _figures(scores, labels, class_names, outputs, worst, where, skipped, noun, example):
    """`(evaluation, worst examples, their indices)` from a run's scores on labelled data.

    `example(i)` gives what identifies example `i` (its path; a text's line
    and text).
    """
    from transferkit.evaluation.inference import classification_figures

    predicted = scores.argmax(axis=1)
    evaluation = {"data_dir": where,
                  **classification_figures(labels, predicted, class_names, skipped, noun=noun,
                                           scores=scores),
                  "outputs": outputs}
    true_scores = scores[np.arange(len(labels)), labels]
    order = np.argsort(true_scores, kind="stable")[:worst]
    one, every = _output_names(outputs)
    examples = [{
        **example(i),
        "true_class": class_names[labels[i]],
        "predicted_class": class_names[predicted[i]],
        f"true_class_{one}": float(true_scores[i]),
        every: [float(v) for v in scores[i]],
    } for i in order]
    return evaluation, examples, order


def _checked_evaluated(evaluated, folder, classes):
    """`write_report`'s `evaluated` as arrays `(scores, images)`, matching `folder` and the run."""
    scores, images = evaluated
    scores = np.asarray(scores)
    # An array, or images decoded on demand (`ImageFiles`): only the worst are read.
    images = images if hasattr(images, "shape") else np.asarray(images)
    expected = (len(folder.files), classes)
    if scores.shape != expected or not np.issubdtype(scores.dtype, np.number):
        raise TransferkitError(
            f"evaluated's scores must be numbers of shape {expected} ({os.fspath(folder.root)}'s "
            f"images by the run's classes); got {scores.dtype} {scores.shape}.")
    if len(images.shape) != 4 or len(images) != len(folder.files):
        raise TransferkitError(
            f"evaluated's images must be the {len(folder.files)} decoded images of "
            f"{os.fspath(folder.root)}, (n, height, width, 3); got shape {tuple(images.shape)}.")
    return scores, images


# --------------------------------------------------------------------------
# Rendering the page.

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; background: #fff; margin: 0; line-height: 1.45; }
main { max-width: 960px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1rem; margin: 16px 0 6px; }
.subtitle { color: #59636e; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92rem; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 0.88em; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600;
           background: #ddf4ff; color: #0a3069; }
.verdict.over-fitting, .verdict.diverged { background: #ffebe9; color: #82071e; }
.verdict.under-fitting, .verdict.inconclusive { background: #fff8c5; color: #4d2d00; }
.verdict.good-fit { background: #dafbe1; color: #116329; }
img.curves { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
table.confusion td { text-align: center; min-width: 3em; font-variant-numeric: tabular-nums; }
.examples { display: grid; gap: 12px;
            grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); }
figure { margin: 0; padding: 8px; border: 1px solid #d0d7de; border-radius: 6px;
         font-size: 0.85rem; }
figure img { display: block; width: 128px; height: auto; margin: 0 auto 6px; }
figure .wrong { color: #82071e; font-weight: 600; }
.muted { color: #59636e; }
td.wrong { color: #82071e; font-weight: 600; }
td.text { max-width: 520px; white-space: pre-wrap; overflow-wrap: anywhere; }
footer { margin-top: 40px; color: #59636e; font-size: 0.85rem; }
"""


def _render(report, thumbnails, folder):
    e = _escape
    title = f"{report['backbone'] or 'model'} on {_base(report['data']) or 'data'}"
    kind = {"cv": "cross-validation", "compare": "comparison"}.get(report["command"],
                                                                    "training run")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}: transferkit report</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
        f'<p class="subtitle">transferkit {e(kind)}, {e(report["date"].replace("T", " "))} '
        "&middot; "
        f'head {e(report["head"])} &middot; <span class="mono">{e(report["run_dir"])}</span></p>',
    ]
    if report["command"] == "compare":
        parts += _variants_section(report["variants"])
        parts += _curves_section(folder, COMPARISON_FILE)
        if report["diagnosis"]:
            parts += _diagnosis_section(list(report["diagnosis"].values()),
                                        names=list(report["diagnosis"]))
    else:
        parts += _metrics_section(report)
    if report["folds"] is not None:
        parts += _folds_section(report["folds"])
    if report["diagnosis"] is not None and report["command"] != "compare":
        parts += _diagnosis_section(report["diagnosis"])
    parts += _curves_section(folder)
    if report["evaluation"] is not None:
        parts += _evaluation_section(report["evaluation"])
        parts += _worst_section(report["worst"], thumbnails,
                                report["evaluation"]["class_names"])
    parts += _config_section(report["config"], report["class_names"])
    parts += ["<footer>Written by <code>transferkit report</code>; the numbers are also in "
              f"<code>{REPORT_JSON_FILE}</code>.</footer>", "</main></body></html>", ""]
    return "\n".join(parts)


def _metrics_section(report):
    metrics = report["metrics"]
    rows = []
    if report["command"] == "cv":
        mean, std = metrics.get("mean") or {}, metrics.get("std") or {}
        for key in mean:
            rows.append((f"{_METRIC_LABELS.get(key, key)} (mean ± std)",
                         f"{_number(mean.get(key))} ± {_number(std.get(key))}"))
    keys = [k for k in _METRIC_LABELS if k in metrics]
    keys += [k for k in metrics if k not in _METRIC_LABELS
             and k not in ("folds", "mean", "std", "skipped_files")]
    rows += [(_METRIC_LABELS.get(k, k),
              _value(metrics[k]) if k == "seconds" else _number(metrics[k])) for k in keys]
    parts = ["<h2>Metrics</h2>", _table(("metric", "value"), rows, numeric=(1,))]
    skipped = metrics.get("skipped_files") or []
    if skipped:
        parts.append(f"<p>Skipped {len(skipped)} unreadable file(s):</p>")
        parts.append("<ul>" + "".join(f'<li class="mono">{_escape(p)}</li>' for p in skipped)
                     + "</ul>")
    return parts


def _folds_section(folds):
    rows = list(folds.get("folds") or [])
    linear = any(r.get("C") is not None for r in rows)
    header = ("fold", "train images", "val images", "val accuracy", "val loss",
              "C" if linear else "best epoch")
    body = [(r.get("fold"), r.get("train_images"), r.get("val_images"),
             _number(r.get("best_val_accuracy")), _number(r.get("best_val_loss")),
             _number(r.get("C") if linear else r.get("best_epoch"))) for r in rows]
    for name in ("mean", "std"):
        values = folds.get(name) or {}
        body.append((name, "", "", _number(values.get("best_val_accuracy")),
                     _number(values.get("best_val_loss")), ""))
    return ["<h2>Folds</h2>", _table(header, body, numeric=(1, 2, 3, 4, 5))]


def _variants_section(variants):
    header = ("variant", "best epoch", "best val loss", "best val accuracy", "last val loss",
              "last val accuracy", "over-fitting onset", "verdict", "options")
    body = [(name, f"{row.get('best_epoch')} of {row.get('epochs_run')}",
             _number(row.get("best_val_loss")), _number(row.get("best_val_accuracy")),
             _number(row.get("last_val_loss")), _number(row.get("last_val_accuracy")),
             "–" if row.get("overfitting_onset") is None else row.get("overfitting_onset"),
             row.get("verdict"),
             ", ".join(f"{k}={v}" for k, v in (row.get("options") or {}).items()) or "base")
            for name, row in variants.items()]
    return ["<h2>Variants</h2>", _table(header, body, numeric=(2, 3, 4, 5))]


def _diagnosis_section(diagnosis, names=None):
    parts = ["<h2>Diagnosis</h2>"]
    entries = diagnosis if isinstance(diagnosis, list) else [diagnosis]
    for k, d in enumerate(entries, 1):
        if names is not None:
            parts.append(f"<h3>{_escape(names[k - 1])}</h3>")
        elif len(entries) > 1:
            parts.append(f"<h3>Fold {k}</h3>")
        verdict = d["verdict"]
        parts.append(f'<p><span class="verdict {_escape(verdict.replace(" ", "-"))}">'
                     f"{_escape(verdict)}</span></p>")
        best = ("none" if d["best_epoch"] is None else
                f"{d['best_epoch']} of {d['epochs']} ("
                + ", ".join(f"{k2} {_number(v)}" for k2, v in d["best"].items() if v is not None)
                + ")")
        onset = (f"epoch {d['overfitting_onset']}" if d["overfitting_onset"] is not None
                 else f"not observed (patience {d['patience']})")
        gaps = []
        for when, gap in d["generalization_gap"].items():
            figures = ", ".join(f"{k2} {_number(v)}" for k2, v in gap.items() if k2 != "epoch")
            if figures:
                gaps.append(f"{when} (epoch {gap.get('epoch')}): {figures}")
        rows = [("best epoch", best), ("over-fitting onset", onset),
                ("generalization gap (validation − training)", "; ".join(gaps) or "–")]
        parts.append(_table(("", ""), rows, show_header=False))
        parts.append("<h3>Why</h3><ul>" + "".join(f"<li>{_prose(r)}</li>" for r in d["reasons"])
                     + "</ul>")
        parts.append("<h3>What to try next</h3><ul>"
                     + "".join(f"<li>{_prose(a)}</li>" for a in d["advice"]) + "</ul>")
    return parts


def _curves_section(run_dir, name=CURVES_FILE):
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        uri = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
    return ["<h2>Curves</h2>",
            f'<img class="curves" src="{uri}" alt="training and validation curves">']


def _skewed_class_figures(evaluation):
    """The paragraph of balanced accuracy, macro-F1 and (two classes) AUCs, if computed."""
    if "macro_f1" not in evaluation:
        return []
    text = (f'Balanced accuracy (mean recall) <strong>'
            f'{_number(evaluation["balanced_accuracy"])}</strong>, macro-F1 <strong>'
            f'{_number(evaluation["macro_f1"])}</strong>')
    if "roc_auc" in evaluation:
        positive = _escape(evaluation["class_names"][1])
        text += (f', ROC-AUC {_number(evaluation["roc_auc"])}, PR-AUC '
                 f'{_number(evaluation["pr_auc"])} ({positive} positive); the threshold on its '
                 f'score with the best balanced accuracy here: {_number(evaluation["threshold"])} '
                 f'({_number(evaluation["balanced_accuracy_at_threshold"])})')
    return [f"<p>{text}.</p>"]


def _evaluation_section(evaluation):
    names = evaluation["class_names"]
    e = _escape
    noun = "texts" if "texts" in evaluation else "images"
    parts = ["<h2>Evaluation</h2>",
             f'<p>Accuracy <strong>{_number(evaluation["accuracy"])}</strong> on '
             f'{evaluation[noun]} {noun} in <span class="mono">'
             f'{e(evaluation["data_dir"])}</span>.</p>',
             *_skewed_class_figures(evaluation),
             _table(("class", "precision", "recall", "F1", "support"),
                    [(n, _number(c["precision"]), _number(c["recall"]),
                      _number(c.get("f1")), c["support"])
                     for n, c in evaluation["classes"].items()], numeric=(1, 2, 3, 4)),
             "<h3>Confusion matrix</h3>",
             '<p class="muted">Rows: true class; columns: predicted class. The shade is the '
             "share of the row.</p>",
             '<table class="confusion"><tr><th>true \\ predicted</th>'
             + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
    for name, row in zip(names, evaluation["confusion_matrix"]):
        total = sum(row) or 1
        cells = []
        for value in row:
            share = value / total
            ink = "#fff" if share > 0.55 else "#1f2328"
            cells.append(f'<td style="background: rgba(9, 105, 218, {share:.3f}); '
                         f'color: {ink}">{int(value)}</td>')
        parts.append(f"<tr><th>{e(name)}</th>{''.join(cells)}</tr>")
    parts.append("</table>")
    return parts


def _worst_section(examples, images, class_names):
    if not examples:
        return []
    what, every = _output_names("scores" if "scores" in examples[0] else "probabilities")
    if "text" in examples[0]:
        return _worst_texts(examples, class_names, what, every)
    parts = ["<h2>Worst-classified examples</h2>",
             f'<p class="muted">The {len(examples)} image(s) with the lowest {what} for their '
             "true class, lowest first, as the model saw them.</p>",
             '<div class="examples">']
    for example, pixels in zip(examples, images):
        value = example[f"true_class_{what}"]
        wrong = ' class="wrong"' if example["predicted_class"] != example["true_class"] else ""
        values = ", ".join(f"{_escape(n)} {_number(v)}"
                           for n, v in zip(class_names, example[every]))
        parts.append(
            "<figure>"
            f'<img src="{_thumbnail(pixels)}" alt="{_escape(os.path.basename(example["path"]))}">'
            f"<div>true: <strong>{_escape(example['true_class'])}</strong> ({what} "
            f"{_number(value)})</div>"
            f"<div{wrong}>predicted: {_escape(example['predicted_class'])}</div>"
            f'<div class="muted">{every}: {values}</div>'
            f'<div class="muted mono">{_escape(os.path.basename(example["path"]))}</div>'
            "</figure>")
    parts.append("</div>")
    return parts


def _worst_texts(examples, class_names, what, every):
    """The worst-classified texts: a table, each text escaped and cut at `_TEXT_SHOWN`."""
    rows = []
    for example in examples:
        text = example["text"]
        shown = _escape(text[:_TEXT_SHOWN]) + ("&hellip;" if len(text) > _TEXT_SHOWN else "")
        wrong = example["predicted_class"] != example["true_class"]
        values = ", ".join(f"{_escape(n)} {_number(v)}"
                           for n, v in zip(class_names, example[every]))
        where = "" if example.get("line") is None else f"line {example['line']}"
        marked = ' class="wrong"' if wrong else ""
        value = _number(example[f"true_class_{what}"])
        rows.append(
            f'<tr><td class="mono">{where}</td><td>{_escape(example["true_class"])}</td>'
            f'<td{marked}>{_escape(example["predicted_class"])}</td>'
            f'<td class="num">{value}</td><td class="muted">{values}</td>'
            f'<td class="text">{shown}</td></tr>')
    return ["<h2>Worst-classified examples</h2>",
            f'<p class="muted">The {len(examples)} text(s) with the lowest {what} for their '
            f"true class, lowest first (texts longer than {_TEXT_SHOWN:,} characters are "
            "cut here).</p>",
            "<table><tr><th>where</th><th>true</th><th>predicted</th>"
            f"<th>{what} of true</th><th>{every}</th><th>text</th></tr>",
            *rows, "</table>"]


def _config_section(config, class_names):
    parts = ["<h2>Configuration</h2>"]
    if class_names:
        parts.append("<p>Classes: " + ", ".join(f"<code>{_escape(n)}</code>" for n in class_names)
                     + "</p>")
    arguments = config.get("arguments") or {}
    parts.append("<h3>Arguments</h3>")
    parts.append(_table(("argument", "value"), [(k, _value(v)) for k, v in arguments.items()]))
    phases = config.get("phases")
    if phases:
        keys = [k for k in ("name", "epochs", "epochs_run", "learning_rate", "unfreeze",
                            "optimizer", "schedule", "stopped_early", "trainable_params")
                if any(k in p for p in phases)]
        parts.append("<h3>Phases</h3>")
        parts.append(_table(keys, [[_value(p.get(k)) for k in keys] for p in phases]))
    if config.get("augmentation"):
        parts.append(f"<p>Augmentation: <code>{_escape(_value(config['augmentation']))}</code></p>")
    versions = config.get("versions")
    if isinstance(versions, dict) and versions:
        parts.append('<p class="muted">Versions: '
                     + ", ".join(f"{_escape(k)} {_escape(v)}" for k, v in versions.items())
                     + "</p>")
    return parts


# --------------------------------------------------------------------------
# Small helpers.


def _table(header, rows, *, numeric=(), show_header=True):
    out = ["<table>"]
    if show_header:
        out.append("<tr>" + "".join(f"<th>{_escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{_escape(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _thumbnail(pixels):
    """A uint8 RGB array as a `data:` URI of a JPEG at most THUMBNAIL_SIZE px wide."""
    from PIL import Image

    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    scale = THUMBNAIL_SIZE / max(image.size)
    size = tuple(max(1, round(s * scale)) for s in image.size)
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    image = image.resize(size, resample)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _output_names(outputs):
    """`(one, every)`: the words for a run's outputs, as `inference.predict` uses them."""
    return ("score", "scores") if outputs == "scores" else ("probability", "probabilities")


def _value(value):
    """A config value as short text: JSON-like for dicts and lists, `–` for None."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number(value):
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return _value(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"


def _base(path):
    return os.path.basename(os.path.normpath(path)) if isinstance(path, str) and path else None


def _prose(text):
    """Escaped text with its `backticked` parts as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _escape(text))


def _escape(value):
    return html.escape(str(value), quote=True)
