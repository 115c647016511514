"""Exporting a run's model for serving: SavedModel, LiteRT or ONNX, checked in its own runtime.

The artifact is written by Keras' own `model.export` (and the converters it
drives: `tf.saved_model`, the TensorFlow Lite converter, `tf2onnx`), then
loaded in the runtime that will serve it (`tf.saved_model.load`, the LiteRT
interpreter, ONNX Runtime) and run on the run's validation examples. Its
outputs are compared with the Keras model's; a mismatch is an error and
nothing is left behind.

Which formats take which quantization: `--quantize float16|int8` is for
litert only; saved_model and onnx export the float32 model as trained.
"""

import contextlib
import dataclasses
import importlib.util
import logging
import os
import warnings

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.outputs import check_output_folder, output_folder
from transferkit.progress import Progress
from transferkit.runs import CONFIG_FILE, MODEL_FILE, read_run_config, write_json

FORMATS = ("saved_model", "litert", "onnx")
QUANTIZATIONS = {"saved_model": (), "litert": ("float16", "int8"), "onnx": ()}
QUANTIZE_HELP = ("--quantize float16|int8 works with --format litert only; saved_model and "
                 "onnx export the float32 model as trained")
# The file each format writes into the export folder (a SavedModel is the folder).
ARTIFACTS = {"saved_model": None, "litert": "model.tflite", "onnx": "model.onnx"}
EXTRA = 'pip install "transferkit[export]"'

# Verification tolerances.
# A float32 export: the largest absolute difference from the Keras model's
# outputs, as a share of their scale (probabilities: 1e-4). Measured on
# EfficientNet-Lite0 (hymenoptera, 153 images): 0 (SavedModel), 1.4e-6
# (LiteRT), 1.1e-6 (ONNX); a conversion fault is orders of magnitude above.
MAX_DIFFERENCE = 1e-4
# A quantized export: the least share of inputs whose predicted class is the
# Keras model's, and (on labelled examples) the most accuracy it may lose.
MIN_AGREEMENT = {"float16": 0.98, "int8": 0.90}
MAX_ACCURACY_DROP = {"float16": 0.01, "int8": 0.05}

REPRESENTATIVE = 100  # training examples that calibrate int8 activations
_RANDOM = 32  # random inputs verified on when the run's data is gone


@dataclasses.dataclass
class Export:
    """What `export` wrote and how its check went.

    Attributes:
        path: the export folder (holding the artifact and `config.json`).
        artifact: what a server loads: the SavedModel folder, or the
            `.tflite` / `.onnx` file.
        format: `"saved_model"`, `"litert"` or `"onnx"`.
        quantize: `None`, `"float16"` or `"int8"`.
        size: the artifact's size in bytes.
        source: what it was verified on (`"validation images"`,
            `"validation texts"`, `"random inputs"`).
        samples: how many inputs.
        same_class: on how many of them the predicted class is the Keras
            model's.
        largest_difference: the largest absolute difference from the Keras
            model's outputs.
        tolerance: the largest difference allowed (float exports), or `None`.
        accuracy: the export's accuracy on the labelled samples, or `None`.
        float_accuracy: the Keras model's, or `None`.
    """

    path: str
    artifact: str
    format: str
    quantize: str | None
    size: int
    source: str
    samples: int
    same_class: int
    largest_difference: float
    tolerance: float | None
    accuracy: float | None = None
    float_accuracy: float | None = None

    def lines(self):
        """The lines `transferkit export` prints."""
        kind = self.format + (f" ({self.quantize})" if self.quantize else "")
        check = (f"{self.same_class}/{self.samples} same class, largest difference "
                 f"{self.largest_difference:.2g}")
        if self.tolerance is not None:
            check += f" (tolerance {self.tolerance:.0e})"
        lines = [f"Wrote {kind}: {self.artifact} ({_size(self.size)})",
                 f"Verified in {_RUNTIME_NAMES[self.format]} on {self.samples} {self.source}: "
                 f"{check}"]
        if self.quantize and self.accuracy is not None:
            lines.append(f"{self.quantize}: accuracy {self.accuracy:.4f} vs float "
                         f"{self.float_accuracy:.4f} on {self.samples} {self.source}")
        return lines

    def to_dict(self):
        return dataclasses.asdict(self)


_RUNTIME_NAMES = {"saved_model": "TensorFlow (tf.saved_model.load)",
                  "litert": "the LiteRT interpreter", "onnx": "ONNX Runtime"}


def export(run, out=None, *, format="saved_model", quantize=None, overwrite=False,
           samples=1000, seed=0):
    """Exports a run's model for serving and checks the export against it.

    The artifact takes what the run's `model.keras` takes (images as float32
    RGB pixels 0-255, any size the model was built for; token ids for a text
    run) and gives what it gives (class probabilities). After writing it,
    `export` loads it in its own runtime (`tf.saved_model.load`, the LiteRT
    interpreter of `ai_edge_litert` or else `tf.lite`, `onnxruntime`) and runs
    it on the run's validation examples (its `--val` folder or file, or the
    validation part of its `--val-split`, when they still exist; otherwise
    32 seeded random inputs of the right shape), then compares with the
    Keras model's outputs:

    - float32 exports (every format without `quantize`): the largest
      absolute difference must be at most `MAX_DIFFERENCE` (1e-4) times the
      outputs' scale (1 for probabilities);
    - `quantize="float16"`: at least 98% of the predicted classes agree and
      the accuracy (labelled examples) is at most 0.01 below the float
      model's;
    - `quantize="int8"`: at least 90% agree and the accuracy is at most
      0.05 below.

    A failed check raises `TransferkitError` and nothing is written.

    `quantize` is for `format="litert"` only: `"float16"` stores the weights
    as float16 (half the size, computed in float32); `"int8"` quantizes
    weights and activations to 8 bits (a quarter of the size), calibrating
    the activations on `REPRESENTATIVE` (100) of the run's training images,
    which must still exist. The inputs and outputs stay float32. Text runs
    export to every format, but not as int8.

    Args:
        run: a run folder (`transferkit train --out`), or a `Run`.
        out: the export folder to write. Defaults to `None`:
            `RUN/export/FORMAT` (`RUN/export/litert-int8` with `quantize`).
            It holds the artifact (the SavedModel itself, `model.tflite` or
            `model.onnx`) and `config.json` (what was exported, its input,
            the verification figures).
        format: `"saved_model"` (default), `"litert"` or `"onnx"`.
        quantize: `None` (default), or for litert `"float16"` or `"int8"`
            (class runs: the check compares classes; a multi-label or
            regression run exports unquantized, checked by the largest
            difference).
        overwrite: replace `out` if it is a previous export. Defaults to
            `False`; anything else there is never replaced.
        samples: at most this many validation examples are verified on
            (a seeded subset of them). Defaults to 1000.
        seed: the seed of that subset, of the random inputs and of the
            int8 calibration images. Defaults to 0.

    Returns:
        An `Export`: where it wrote, the artifact's size and the figures of
        the check (`lines()` gives the command's printout).

    Example:

    >>> result = export("runs/ants", format="litert", quantize="int8")  # doctest: +SKIP
    >>> print("\\n".join(result.lines()))  # doctest: +SKIP
    Wrote litert (int8): runs/ants/export/litert-int8/model.tflite (3.8 MiB)
    Verified in the LiteRT interpreter on 153 validation images: 152/153 same class, ...
    int8: accuracy 0.9608 vs float 0.9673 on 153 validation images
    """
    _check_format(format, quantize)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise TransferkitError(f"samples must be an int >= 1, like 1000; got {samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TransferkitError(f"seed must be an int, like 0; got {seed!r}.")
    path = os.fspath(getattr(run, "path", run))
    config = read_run_config(path)
    text = config.get("max_length") is not None
    if text and quantize == "int8":
        raise TransferkitError(
            f"{path} is a text run: int8 quantization is for image runs (its calibration "
            "reads training images); export it as litert float16 or unquantized.")
    task = config.get("task", "classes")
    if quantize is not None and task != "classes":
        raise TransferkitError(
            f"{path} predicts {'labels' if task == 'multilabel' else 'numbers'}: a quantized "
            "export is checked by its classes; export it unquantized (checked to 1e-4).")
    _check_packages(format)
    data = _data_paths(config)
    inputs = [os.path.join(path, MODEL_FILE), os.path.join(path, CONFIG_FILE),
              data.get("data_dir"), data.get("val")]
    made = None
    if out is None:
        out = os.path.join(path, "export", format + (f"-{quantize}" if quantize else ""))
        made = _make_parent(out)
    try:
        check_output_folder(out, "export", inputs=inputs, overwrite=overwrite)
        if quantize == "int8" and not _exists(data.get("data_dir"), text):
            raise TransferkitError(
                f"int8 quantization calibrates on the run's training images, and "
                f"{data.get('data_dir')!r} (its data_dir) is gone; export float16 or "
                "unquantized, or train again where the images are.")
        return _export(run, path, out, format, quantize, overwrite, samples, seed, data,
                       inputs)
    except BaseException:
        if made is not None:
            with contextlib.suppress(OSError):
                os.rmdir(made)  # only if still empty
        raise


def _export(run, path, out, format, quantize, overwrite, samples, seed, data, inputs):
    from transferkit.evaluation.inference import Run, load_run
    from transferkit.saving import file_sha256
    from transferkit.workflows.common import versions

    run = run if isinstance(run, Run) else load_run(path)
    x, labels, source = _verification_inputs(run, data, samples, seed)
    representative = _calibration_inputs(run, data, seed) if quantize == "int8" else None
    reference = _keras_outputs(run.model, x)
    with output_folder(out, "export", inputs=inputs, overwrite=overwrite) as tmp:
        artifact = tmp if ARTIFACTS[format] is None else os.path.join(tmp, ARTIFACTS[format])
        _write(run.model, format, quantize, artifact, representative)
        exported = run_exported(format, artifact, x)
        check = _compare(reference, exported, labels, quantize, format,
                         scores=run.outputs == "scores")
        final = out if ARTIFACTS[format] is None else os.path.join(out, ARTIFACTS[format])
        result = Export(path=os.path.abspath(out), artifact=final, format=format,
                        quantize=quantize, size=_bytes(artifact), source=source,
                        samples=len(x), **check)
        spec = run.model.inputs[0]
        write_json(os.path.join(tmp, CONFIG_FILE), {
            "command": "export",
            "run": os.path.abspath(path),
            "format": format,
            "quantize": quantize,
            "artifact": ARTIFACTS[format] or ".",
            "input": {"name": spec.name, "shape": list(spec.shape), "dtype": str(spec.dtype)},
            "class_names": list(run.class_names),
            "outputs": run.outputs,
            "verification": {k: v for k, v in result.to_dict().items()
                             if k not in ("path", "artifact")},
            "model_sha256": file_sha256(os.path.join(path, MODEL_FILE)),
            "versions": versions(),
        })
    return result


def _check_format(format, quantize):
    if format not in FORMATS:
        raise TransferkitError(f"Invalid value for format (--format): {format!r}. Expected one "
                               f"of {', '.join(FORMATS)}.")
    if quantize is not None and quantize not in QUANTIZATIONS[format]:
        if quantize not in ("float16", "int8"):
            raise TransferkitError(f"Invalid value for quantize (--quantize): {quantize!r}. "
                                   f"Expected float16 or int8; {QUANTIZE_HELP}.")
        raise TransferkitError(f"--quantize {quantize} does not apply to --format {format}: "
                               f"{QUANTIZE_HELP}.")


def _check_packages(format):
    needed = {"onnx": ("tf2onnx", "onnxruntime")}.get(format, ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise TransferkitError(f"--format {format} needs {' and '.join(missing)}, which "
                               f"{'is' if len(missing) == 1 else 'are'} not installed: {EXTRA}.")


def _data_paths(config):
    """The run's data: `data_dir`, `val`, `val_split`, `seed`, `strict`, `columns`."""
    arguments = config.get("arguments")
    arguments = arguments if isinstance(arguments, dict) else {}
    return {k: arguments.get(k) for k in ("data_dir", "val", "val_split", "seed", "strict",
                                          "columns", "table")}


def _exists(path, text):
    if not isinstance(path, str):
        return False
    return os.path.isfile(path) if text else os.path.isdir(path)


def _make_parent(out):
    """Creates `out`'s parent folder (`RUN/export`) if missing; returns it if made."""
    parent = os.path.dirname(out)
    if os.path.isdir(parent):
        return None
    try:
        os.mkdir(parent)
    except OSError as e:
        raise TransferkitError(f"Could not create {parent}: {e.strerror}; pass --out.") from None
    return parent


# --------------------------------------------------------------------------
# Inputs.


def _labelled(run, data, part):
    """The run's `"val"` or `"train"` examples (`ImageFolder` / `TextFile`), or `None`."""
    from transferkit.training.config import LabelTable, TextColumns
    from transferkit.workflows.common import read_labelled, scan_split

    columns = TextColumns(**data["columns"]) if run.text and data.get("columns") else None
    strict = bool(data.get("strict"))
    table = LabelTable(**data["table"]) if data.get("table") else None
    if table is not None and not all(os.path.isfile(t) for t in (table.labels, table.val_labels)
                                     if t is not None):
        return None  # its tables are gone
    if data.get("val") is not None:  # validated on a folder (file) of its own
        which = data["val"] if part == "val" else data.get("data_dir")
        if table is not None and part == "val":
            table = LabelTable(**{**data["table"], "labels": table.val_labels,
                                  "val_labels": None})
        return read_labelled(which, run.text, strict, columns, table) \
            if _exists(which, run.text) else None
    if not _exists(data.get("data_dir"), run.text):
        return None
    split = data.get("val_split") or 0.2
    _, train_set, val_set = scan_split(data["data_dir"], None, split, data.get("seed") or 0,
                                       strict, text=run.text, columns=columns, table=table)
    return val_set if part == "val" else train_set


def _model_inputs(run, examples, indices):
    from transferkit.data.stream import ImageFiles

    if run.text:
        return run.encode([examples.texts[i] for i in indices])
    # uint8 pixels, made float32 batch by batch (`_float`): a quarter of the memory.
    return ImageFiles([examples.files[i] for i in indices], run.image_size,
                      crop=run.crop).load()


def _subset(count, limit, seed):
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def _verification_inputs(run, data, samples, seed):
    """`(x, labels or None, what they are)`: validation examples, else random inputs."""
    examples = _labelled(run, data, "val")
    noun = "texts" if run.text else "images"
    if examples is not None and len(examples) and run.task != "classes":
        indices = _subset(len(examples), samples, seed)
        return _model_inputs(run, examples, indices), None, f"validation {noun}"
    if examples is not None and len(examples):
        indices = _subset(len(examples), samples, seed)
        known = {name: k for k, name in enumerate(run.class_names)}
        names = [examples.class_names[examples.labels[i]] for i in indices]
        # A class added to the folder since: the check compares classes, not labels.
        labels = np.array([known[n] for n in names]) if set(names) <= set(known) else None
        return _model_inputs(run, examples, indices), labels, f"validation {noun}"
    rng = np.random.default_rng(seed)
    shape = tuple(run.model.inputs[0].shape[1:])
    if run.text:
        # Ordinary word pieces (past the special tokens) filling every position.
        x = rng.integers(1000, 5000, (_RANDOM, *shape)).astype("int32")
    else:
        x = rng.integers(0, 256, (_RANDOM, *shape)).astype("uint8")
    return x, None, "random inputs"


def _calibration_inputs(run, data, seed):
    examples = _labelled(run, data, "train")
    if examples is None or not len(examples):
        raise TransferkitError(f"int8 quantization calibrates on the run's training images, and "
                               f"{data.get('data_dir')!r} has none left.")
    return _model_inputs(run, examples, _subset(len(examples), REPRESENTATIVE, seed + 1))


# --------------------------------------------------------------------------
# Writing and running.


def _keras_outputs(model, x, batch_size=32):
    return np.concatenate([
        np.asarray(model.predict(_float(x[i:i + batch_size]), verbose=0), dtype=np.float32)
        for i in range(0, len(x), batch_size)])


def _float(batch):
    """Images as the models take them: float32 pixels 0-255 (token ids stay int32)."""
    return batch.astype(np.float32) if batch.dtype == np.uint8 else batch


def _write(model, format, quantize, artifact, representative):
    """`model.export` to `artifact` (Keras 3.15.1's formats and converter options)."""
    if format == "saved_model":
        model.export(artifact, format="tf_saved_model", verbose=False)
        return
    if format == "onnx":
        # tf2onnx logs each conversion step at INFO, and trips NumPy 2's
        # deprecation warnings (Keras patches it for NumPy 2).
        with _quiet("tf2onnx"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(artifact, format="onnx", verbose=False)
        return
    import tensorflow as tf

    options = {}
    if quantize == "float16":
        options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                   "target_spec": {"supported_types": [tf.float16]}}
    elif quantize == "int8":
        def calibration():
            for i in range(len(representative)):
                yield [_float(representative[i:i + 1])]

        options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                   "representative_dataset": calibration}
    with _quiet("absl"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter's notes on its own internals
        model.export(artifact, format="litert", verbose=False, **options)


@contextlib.contextmanager
def _quiet(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_exported(format, artifact, x, batch_size=32):
    """The outputs of an exported model on `x`, computed in the format's own runtime.

    Args:
        format: `"saved_model"`, `"litert"` or `"onnx"`.
        artifact: the SavedModel folder, `.tflite` file or `.onnx` file.
        x: a NumPy array of inputs, as the Keras model takes them (uint8
            images are made float32).
        batch_size: rows per call. Defaults to 32.

    Example:

    >>> run_exported("onnx", "runs/ants/export/onnx/model.onnx", images)  # doctest: +SKIP
    """
    call = {"saved_model": _saved_model_runner, "litert": _litert_runner,
            "onnx": _onnx_runner}[format](os.fspath(artifact))
    outputs = []
    with Progress(len(x), f"Checking the {format} export", unit="inputs") as progress:
        for i in range(0, len(x), batch_size):
            outputs.append(np.asarray(call(_float(x[i:i + batch_size])), dtype=np.float32))
            progress.update(len(outputs[-1]))
    return np.concatenate(outputs)


def _saved_model_runner(artifact):
    import tensorflow as tf

    # The signature a server (TF Serving, `saved_model_cli`) calls.
    serve = tf.saved_model.load(artifact).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]

    def call(batch):
        (output,) = serve(**{name: tf.constant(batch)}).values()
        return output.numpy()

    return call


def _litert_runner(artifact):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own copy, deprecated since 2.20
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=artifact)
    runner = interpreter.get_signature_runner()
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]

    def call(batch):
        (output,) = runner(**{name: batch}).values()
        return output

    return call


def _onnx_runner(artifact):
    import onnxruntime

    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


# --------------------------------------------------------------------------
# Checking.


def _compare(reference, exported, labels, quantize, format, scores=False):
    """The figures of `Export`'s check; raises `TransferkitError` when it fails."""
    if exported.shape != reference.shape:
        raise TransferkitError(f"The {format} export gives outputs of shape {exported.shape}, "
                               f"the Keras model {reference.shape}; it was not written.")
    classes = _classes(reference, scores)
    predicted = _classes(exported, scores)
    same = int(np.sum(classes == predicted))
    largest = float(np.max(np.abs(exported - reference))) if np.all(np.isfinite(exported)) \
        else float("inf")
    figures = {"same_class": same, "largest_difference": largest, "tolerance": None}
    if labels is not None:
        figures["accuracy"] = float(np.mean(predicted == labels))
        figures["float_accuracy"] = float(np.mean(classes == labels))
    kind = f"{format} export" + (f" ({quantize})" if quantize else "")
    where = f"on {len(reference)} inputs"
    if quantize is None:
        tolerance = MAX_DIFFERENCE * max(1.0, float(np.max(np.abs(reference))))
        figures["tolerance"] = tolerance
        if not largest <= tolerance:
            raise TransferkitError(
                f"The {kind} does not match the Keras model: largest difference {largest:.2g} "
                f"{where}, above the tolerance {tolerance:.0e} ({same}/{len(reference)} same "
                "class); it was not written.")
        return figures
    if same < MIN_AGREEMENT[quantize] * len(reference):
        raise TransferkitError(
            f"The {kind} predicts the Keras model's class for only {same}/{len(reference)} "
            f"inputs (at least {MIN_AGREEMENT[quantize]:.0%} needed); it was not written.")
    if labels is not None and figures["accuracy"] < (figures["float_accuracy"]
                                                     - MAX_ACCURACY_DROP[quantize]):
        raise TransferkitError(
            f"The {kind} loses too much accuracy: {figures['accuracy']:.4f} vs float "
            f"{figures['float_accuracy']:.4f} {where} (at most {MAX_ACCURACY_DROP[quantize]} "
            "less allowed); it was not written.")
    return figures


def _classes(outputs, scores=False):
    if outputs.shape[-1] == 1:  # a binary head: P(class 1), or a decision score
        return (outputs[:, 0] > (0.0 if scores else 0.5)).astype(int)
    return outputs.argmax(axis=-1)


def _bytes(artifact):
    if os.path.isfile(artifact):
        return os.path.getsize(artifact)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(artifact) for name in names)


def _size(count):
    if count >= 2**20:
        return f"{count / 2**20:.1f} MiB"
    return f"{count / 2**10:.0f} KiB"
