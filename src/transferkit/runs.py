"""Run folders: the files a run writes, and JSON in and out.

A run folder holds `model.keras`, `history.json`, `metrics.json`,
`config.json` and `curves.png` (and what else the run adds). It is written
complete or not at all by `transferkit.outputs.output_folder`.
"""

import json
import math
import os

from transferkit.errors import TransferkitError

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
COMPARISON_FILE = "comparison.png"
REPORT_FILE = "report.html"


def jsonable(value):
    """`value` as a run's JSON files store it: paths as text, tuples as lists.

    A Keras object (a regularizer given instead of a spec) is stored as
    Keras serializes it (class and config): the record says what it was, and
    two equal objects give equal records (a resume compares them).
    """
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "get_config"):
        import keras

        try:
            return json_ready(keras.saving.serialize_keras_object(value))
        except (TypeError, ValueError, AttributeError):  # not a Keras object after all
            return repr(value)
    return value


def write_json(path, data):
    """Writes `data` as indented JSON (NaN and infinity as `null`)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(json_ready(data), f, indent=2, allow_nan=False)
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


def read_run_config(path):
    """The `config.json` of a train run folder, with its class names and input size checked.

    The input size is `image_size` for images, `max_length` (and the
    `backbone` whose tokenizer makes the token ids) for texts.

    Reads no model and imports no Keras: the cheap check before loading one.

    Example:

    >>> read_run_config("runs/ants")["class_names"]  # doctest: +SKIP
    ['ants', 'bees']
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise TransferkitError(f"No such run folder: {path}; give the --out folder of a train run.")
    config = read_json(os.path.join(path, CONFIG_FILE))
    try:
        list(config["class_names"])
        if config.get("max_length") is not None:
            int(config["max_length"])
            str(config["backbone"])
        else:
            [int(v) for v in config["image_size"]]
    except (KeyError, TypeError, ValueError):
        raise TransferkitError(
            f"{os.path.join(path, CONFIG_FILE)} lacks class_names and image_size (or "
            "max_length); is this a transferkit train run?"
        ) from None
    return config


def json_ready(value):
    """`value` as JSON stores it: keys as text, tuples as lists, NumPy scalars
    as numbers, NaN and infinity as `None` (so a value read back compares equal)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
