"""Run folders: everything a training run writes, complete or not at all.

A run folder holds `model.keras`, `history.json`, `metrics.json`,
`config.json` and `curves.png` (and what else the run adds). It is written
into a temporary folder beside the destination and renamed into place when
complete, so an interrupted run never leaves a half-written folder that
looks finished.
"""

import contextlib
import json
import math
import os
import shutil
import uuid

from transferkit.errors import TransferkitError

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
COMPARISON_FILE = "comparison.png"
REPORT_FILE = "report.html"


def check_run_dir(path, overwrite=False):
    """Fails early (before any training) if `path` cannot become a run folder."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise TransferkitError(f"The folder {parent} does not exist; create it first.")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise TransferkitError(f"{path} exists and is a file; choose another --out.")
        if os.listdir(path) and not overwrite:
            raise TransferkitError(
                f"{path} exists and is not empty; choose another --out or pass --overwrite."
            )
    return path


@contextlib.contextmanager
def run_dir(path, overwrite=False):
    """Yields a temporary folder; on success it becomes `path`.

    If `path` exists (empty, or with `overwrite=True`), it is replaced only
    once the new folder is complete. On error the temporary folder is removed
    and `path` is left as it was.

    Example:

    >>> with run_dir("runs/ants") as tmp:  # doctest: +SKIP
    ...     save_model(model, os.path.join(tmp, "model.keras"))
    """
    path = os.path.abspath(check_run_dir(path, overwrite))
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        yield tmp
        old = None
        if os.path.exists(path):
            old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path, data):
    """Writes `data` as indented JSON (NaN and infinity as `null`)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_clean(data), f, indent=2, allow_nan=False)
        f.write("\n")


def read_json(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TransferkitError(f"No such file: {path}; is this a transferkit run folder?")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise TransferkitError(f"{path} is not valid JSON ({e}).") from None


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
