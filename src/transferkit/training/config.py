"""`TrainingConfig`: how one model is built and trained, declared once.

Every option of `train`, `cross_validate`, `compare` and `lr_find` that says
how a model is made and trained is a field here, with its type, default,
check, command-line flag and help. The command line generates its flags from
the fields (`add_arguments`, `from_arguments`), `config.json` stores
`to_dict()` and `from_dict` rebuilds it, and a variant of a configuration is
`dataclasses.replace(base, **changes)`. Every value is checked once, when the
configuration is made, before any image is read.

Example:

>>> config = TrainingConfig("efficientnet_lite0", epochs=(3, 6), kernel="l2:1e-4")
>>> dataclasses.replace(config, dropout=0.5).dropout
0.5
"""

import dataclasses
import difflib
import math
import numbers
import os

from transferkit.backbones.shapes import MAX_SEQUENCE_LENGTH
from transferkit.errors import TransferkitError
from transferkit.models.precision import PRECISIONS
from transferkit.training.class_weights import check_class_weight
from transferkit.training.distribution import check_devices, parse_devices, placement
from transferkit.runs import jsonable

# The classifier `train` puts on the backbone.
HEADS = ("auto", "softmax", "logreg", "linear-svm", "ridge")
LINEAR_HEADS = ("logreg", "linear-svm", "ridge")
# What a model predicts, from its data: one class, several labels, or a number
# (`transferkit.data.tables`).
TASKS = ("classes", "multilabel", "regression")
# The losses a regression network can train with; "auto" is the task's usual one.
LOSSES = ("auto", "mse", "mae", "huber")
_TASK_NOUNS = {"classes": "classes", "multilabel": "multi-label targets",
               "regression": "numeric targets"}
# Seed 001's rule of thumb, measured on hymenoptera (bench/README.md,
# "Defaults"): below this many training images a linear classifier on the
# frozen features is as accurate as fine-tuning, in a fraction of the time.
SMALL_DATA = 1000
# From this ratio of the largest class to the smallest on, `train` suggests
# class weights (bench/README.md, "Skewed classes").
SKEWED = 3
# The live logs of the epochs a run can keep (`--log`; transferkit.training.tracking).
LOGS = ("csv", "tensorboard", "mlflow")
# The module each live log imports (the extra of the same name installs it).
_LOG_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
# Where a run is watched, not what it computes: a resumed run need not match them.
WATCHING_OPTIONS = ("log", "mlflow_uri")
# Where a run computes: a resumed run need not match them either (unless the
# learning rates scale with the devices).
PLACEMENT_OPTIONS = ("devices", "model_parallel")
# The options only a trained network uses: set any of them and "auto" fine-tunes.
_NETWORK_OPTIONS = ("epochs", "learning_rate", "fine_tune_factor", "unfreeze", "optimizer",
                    "schedule", "lr_decay", "batchnorm", "kernel", "bias", "dropout",
                    "dropout_after", "dropout_after_rate", "dropout_kind", "kernel_constraint",
                    "augment", "augmented_copies", "patience", "from_scratch", "lora",
                    "monitor", "loss", "balanced_batches")
# What can pick a network's best epoch (`FineTuner`'s monitor).
MONITORS = ("val_loss", "val_accuracy", "val_macro_f1")

# The recipe's defaults that differ by what the backbone reads (`None` in a
# configuration means these). Images: bench/README.md, "The defaults". Text:
# a pretrained transformer is wrecked by the image rate (1e-4 after a 1e-3
# head phase), so it fine-tunes at 3e-5 after a warm-up (bench/README.md,
# "Text").
RECIPE_DEFAULTS = {
    "image": {"epochs": (5, 10), "fine_tune_factor": 0.1, "schedule": None},
    "text": {"epochs": (5, 3), "fine_tune_factor": 0.03, "schedule": "cosine:warmup=0.1"},
}


# LoRA's adapters start at zero (B = 0) and are few: they learn at ten times full
# fine-tuning's rate (3e-4 after the 1e-3 head phase). Measured on IMDB (2,000
# reviews): 0.8324 test accuracy at 3e-5, 0.8804 at 3e-4, 0.8798 for the
# whole encoder at 3e-5 (bench/README.md, "Text end to end").
LORA_FINE_TUNE_FACTOR = 0.3


def _by_modality(name):
    """How a per-modality default reads in the help."""
    def shown(value):
        if value is None:
            return "constant"
        return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" \
            if isinstance(value, float) else str(value)
    return "; ".join(f"{shown(d[name])} for {'images' if m == 'image' else m}"
                     for m, d in RECIPE_DEFAULTS.items())


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a field appears on the command line.

    Args:
        name: the flag, like `"--epochs"`.
        help: what it does (the default is appended).
        metavar: the value's placeholder. Defaults to `None`.
        choices: the accepted texts. Defaults to `None`.
        parse: text -> value (syntax only; the field's check judges the
            value). Defaults to `None`: the text itself.
        show: how the default reads in the help. Defaults to `None`: as is.
        aliases: `Alias`es: shorthands for the same field, like
            `--no-augment`. Defaults to `()`.
    """

    name: str
    help: str
    metavar: str | None = None
    choices: tuple | None = None
    parse: object = None
    show: str | None = None
    aliases: tuple = ()


@dataclasses.dataclass(frozen=True)
class Alias:
    """A shorthand flag for a field: a switch (`value`) or a flag with its own syntax.

    Args:
        name: the flag, like `"--no-augment"`.
        help: what it does.
        value: for a switch, the text of the field's own flag it stands for
            (`--no-augment` is `--augment none`). Defaults to `None`.
        parse: for a flag that takes a value: text -> the field's value.
            Defaults to `None` (a switch).
        metavar: the value's placeholder, with `parse`. Defaults to `None`.
    """

    name: str
    help: str
    value: object = None
    parse: object = None
    metavar: str | None = None


def option(default, flag, check=None):
    """A configuration field: its default, its `Flag` and its check."""
    return dataclasses.field(default=default, metadata={"flag": flag, "check": check})


# --------------------------------------------------------------------------
# Checks: value -> value (normalized), or a one-line TransferkitError.


def _int_at_least(minimum, none_ok=False):
    def check(name, value):
        if value is None and none_ok:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or value < minimum:
            extra = " or None" if none_ok else ""
            raise TransferkitError(f"{name} must be an int >= {minimum}{extra}, got {value!r}.")
        return int(value)
    return check


def _rate(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0 <= value < 1:
        raise TransferkitError(f"{name} must be in [0, 1), got {value!r}.")
    return float(value)


def _one_of(*allowed):
    def check(name, value):
        if value not in allowed:
            raise TransferkitError(f"{name} must be one of {', '.join(map(repr, allowed))}, "
                                   f"got {value!r}.")
        return value
    return check


def _epochs(name, value):
    if value is None:
        return None
    try:
        value = tuple(value)
    except TypeError:
        value = (value,)
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                              or v < 0 for v in value):
        raise TransferkitError(f"epochs must be two counts >= 0 (head, fine-tune), "
                               f"got {value!r}.")
    return tuple(int(v) for v in value)


def _fine_tune_factor(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise TransferkitError(f"fine_tune_factor must be in (0, 1], got {value!r}: the "
                               "fine-tuning rate should not exceed the head's.")
    return float(value)


def _spec_or_none(family):
    def check(name, value):
        if value is None:
            return None
        family(value)  # fails on a bad spec, with the family's message
        return value
    return check


def _penalty(value):
    from transferkit import specs
    from transferkit.regularizers.penalty_specs import parse_penalty

    if specs.is_plain_spec(value):
        parse_penalty(value)  # without Keras
    else:  # a Keras regularizer or its serialized dict: Keras checks it
        from transferkit.regularizers.penalties import get_penalty

        get_penalty(value)


def _constraint(value):
    from transferkit import specs
    from transferkit.regularizers.constraint_specs import parse_constraint

    if specs.is_plain_spec(value):
        parse_constraint(value)  # without Keras
    else:  # a Keras constraint or its serialized dict: Keras checks it
        from transferkit.regularizers.constraints import get_constraint

        get_constraint(value)


def _plan(name, value):
    from transferkit.models.plans import parse_plan

    parse_plan(value)
    return value


def _augment(name, value):
    from transferkit.data import augment

    augment.parse(value)
    return value


def _dropout_after(name, value):
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)) or not value:
        raise TransferkitError(f"dropout_after must be 'blocks', 'head' or layer names, got "
                               f"{value!r}.")
    return value if isinstance(value, str) else list(value)


def _check_weights_file(weights):
    import h5py  # only for a weights file: h5py costs ~0.1 s to import

    if not isinstance(weights, (str, os.PathLike)):
        raise TransferkitError(f"weights must be 'imagenet', None or a weights file; got "
                               f"{weights!r}.")
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise TransferkitError(f"No such weights file: {path}; check the path.")
    # A KerasHub preset folder is the weights of a KerasHub backbone.
    if os.path.isfile(path) and not h5py.is_hdf5(path):
        raise TransferkitError(
            f"{path} is not a weights file: expected HDF5, as model.save_weights('x.weights.h5') "
            "writes it."
        )


def _seed(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TransferkitError(f"seed must be an int or None, got {value!r}.")
    return value


def _lr_decay(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise TransferkitError(f"lr_decay must be in (0, 1], like 0.5, got {value!r}.")
    return float(value)


def _log(name, value):
    """`"csv,tensorboard"`, a list of kinds, or `"none"` -> a tuple in `LOGS` order."""
    kinds = value.split(",") if isinstance(value, str) else value
    if kinds is None or not isinstance(kinds, (list, tuple)) \
            or not all(isinstance(k, str) for k in kinds):
        raise TransferkitError(f"log must be 'none' or kinds among {', '.join(LOGS)} "
                               f"(comma-separated), got {value!r}.")
    kinds = {k.strip().lower() for k in kinds} - {""}
    if kinds == {"none"} or not kinds:
        return ()
    unknown = sorted(kinds - set(LOGS))
    if unknown:
        raise TransferkitError(f"log: unknown kind {unknown[0]!r}; use 'none' or kinds among "
                               f"{', '.join(LOGS)}, like csv,tensorboard.")
    return tuple(k for k in LOGS if k in kinds)


def _text_or_none(name, value):
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TransferkitError(f"{name} must be a text or None, got {value!r}.")
    return None if value is None else os.fspath(value)


# --------------------------------------------------------------------------
# Command-line syntax: text -> value (the field's check judges the value).


def _counts(text):
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if len(counts) != 2 or min(counts) < 0:
        raise TransferkitError(f"--epochs takes two counts >= 0, head and fine-tuning, like "
                               f"5,10; got {text!r}.")
    return counts


def _rates(text):
    """`--lr LR[,LR2]`: the head's rate and, optionally, the fine-tuning factor."""
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        rates = []
    if len(rates) not in (1, 2) or not all(math.isfinite(r) and r > 0 for r in rates):
        raise TransferkitError(f"--lr takes one or two positive rates like 1e-3 or 1e-3,1e-4; "
                               f"got {text!r}.")
    if len(rates) == 1:
        return {"learning_rate": rates[0]}
    return {"learning_rate": rates[0], "fine_tune_factor": rates[1] / rates[0]}


def _none_if(word, kind=str):
    def parse(text):
        if text is None or text.strip().lower() == word:
            return None
        return kind(text)
    return parse


def _positive_int_or_none(text):
    value = int(text)
    return value or None


def _max_norm(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise TransferkitError(f"--max-norm must be positive, like 3; got {text}.")
    return f"max_norm:{value:g}"


# --------------------------------------------------------------------------
# The configuration.


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How one model is built and trained: every option of `train`, checked.

    Shared by `train`, `cross_validate`, `compare` (each variant is
    `dataclasses.replace(base, **changes)`) and `lr_find`. Making one checks
    every value (before any image is read); a mistake is one
    `TransferkitError` line.

    Args:
        backbone: a catalogue backbone, image or text (`transferkit backbones`),
            or your own model A (seed 003): a `.keras` file, a transferkit run
            folder or a KerasHub image preset folder, read afresh for every
            model (`transferkit.backbones.source`).
        cut_at: with a backbone given by path, the layer where A ends: a
            layer name or `"auto"`. Defaults to `None` (auto: a transferkit
            model's nested backbone, else the last layer before A's output).
        head: `"auto"` (default), `"softmax"` (a trained Dense head: the
            two-phase fine-tuning recipe; its output is a sigmoid per label
            for multi-label targets, one linear unit for regression),
            `"logreg"` or `"linear-svm"` (a linear classifier on frozen
            features, `C` chosen by cross-validation; `"logreg"` fits one
            per label for multi-label targets) or `"ridge"` (ridge
            regression on frozen features, for a numeric target); the
            training options are unused by the linear heads. `"auto"` is
            decided by `for_data` once the training images are counted:
            `"logreg"` under `SMALL_DATA` (1,000) images with pretrained
            weights and every network option at its default, else (and for
            numeric targets) `"softmax"`.
        epochs: `(head epochs, fine-tuning epochs)`. Defaults to `None`:
            `(5, 10)` for images, `(5, 3)` for text (`RECIPE_DEFAULTS`).
        learning_rate: the head phase's rate. Defaults to `1e-3`.
        fine_tune_factor: fine-tuning rate = `learning_rate * factor`, in
            `(0, 1]`. Defaults to `None`: 0.1 for images, 0.03 for text
            (3e-5), 0.3 with `lora`.
        unfreeze: the fine-tuning phase's freeze plan (`all`, `none`,
            `last:N`, `fraction:F`, `from:LAYER`, `blocks:N`). Defaults to
            `"all"`.
        optimizer: optimizer spec, e.g. `"sgd:momentum=0.9,nesterov=true"`.
            Defaults to `"adam"`.
        schedule: learning-rate schedule spec per phase, e.g.
            `"1cycle:max_lr=1e-2"`. Defaults to `None`: constant for images,
            `"cosine:warmup=0.1"` for text.
        lr_decay: discriminative fine-tuning: each backbone block trains at
            `lr_decay` times the rate of the block after it. Defaults to
            `None`.
        batchnorm: `"frozen"` (default; inference mode) or `"train"`.
        kernel: kernel penalty spec, e.g. `"l2:1e-4"`. Defaults to `None`.
        bias: bias penalty spec. Defaults to `None`.
        dropout: rate before the head, in `[0, 1)`. Defaults to `0.2`.
        dropout_after: dropout inserted into the pretrained graph:
            `"blocks"` or layer names. Defaults to `None`.
        dropout_after_rate: their rate. Defaults to `0.1`.
        dropout_kind: `"dropout"` (default) or `"spatial"`.
        kernel_constraint: a constraint on every kernel, e.g.
            `"max_norm:3"`. Defaults to `None`.
        augment: augmentation spec (`True`, `False`, `"none"`,
            `"flip=horizontal,rotate=0.1"`; `mixup=0.2`, `cutmix=1.0` mix the
            training batches and their labels, softmax heads only:
            `transferkit.data.mixing`). Defaults to `True`.
        augmented_copies: with augmentation on, the frozen head phase trains
            on `K` augmented copies of the features computed once (`0`, the
            default: through the backbone every epoch).
        image_size: image side in pixels. Defaults to `None`: the
            backbone's (`BackboneConfig.input_size`: for a linear head its
            measured `linear_size`, e.g. 320 for efficientnet_lite0).
        crop: `None` (default; resize whole images) or `"center"`.
        batch_size: Defaults to `32`.
        patience: early-stopping patience per phase, or `None`. Defaults to
            `5`.
        seed: seeds the split, the augmentation and the initialization.
            Defaults to `0`.
        weights: `"imagenet"` (default), `None`, or a weights file.
        from_scratch: the baseline: random weights, one phase with every
            layer trainable for `sum(epochs)` epochs. Defaults to `False`.
        monitor: the validation figure that chooses the best epoch and
            stops a phase early: `"val_loss"` (default), `"val_accuracy"`
            or `"val_macro_f1"` (the mean of the classes' F1, for skewed
            classes). Networks only: a linear head has no epochs.
        class_weight: `None` (default: every example weighs 1),
            `"balanced"` (class `c` weighs `n / (k * n_c)`), a `.json` or
            `.csv` file of per-class weights, or a `{class: weight}` dict
            (`transferkit.training.class_weights`).
        loss: a regression network's loss: `"mse"`, `"mae"` or `"huber"`
            (delta one standard deviation of the targets). Defaults to
            `"auto"`: mean squared error for regression, cross-entropy for
            classes and labels (the only loss they take).
        balanced_batches: each epoch serves `n` training examples drawn
            with probability inverse to their class's frequency, so that
            every class is equally likely in a batch
            (`transferkit.data.sampling`); seeded, resumable. Not with
            `class_weight` (the same correction twice) nor a linear head.
            Defaults to `False`.
        precision: `"float32"` (default) or `"mixed"`: the backbone computes
            in bfloat16 on a CPU, float16 on a GPU, the head and the loss in
            float32 (`transferkit.models.precision`).
        max_length: text backbones: tokens per text. Defaults to `None`:
            chosen from the training texts (`Trainer.for_texts`).
        lora: text backbones: the rank of LoRA adapters on the attention's
            query and value projections, the only part of the encoder that
            fine-tunes (`transferkit.models.lora`). Defaults to `None` (off).
        log: the live logs of the epochs, kinds among `LOGS`
            (`transferkit.training.tracking`): `"csv"` (`training_log.csv`
            in the run folder), `"tensorboard"` (`logs/`), `"mlflow"` (a run
            in `mlflow_uri`); a comma-separated text or a list; `"none"` or
            `()` for none. Not part of what a resumed run must match.
            Defaults to `("csv",)`.
        mlflow_uri: the MLflow tracking URI. Defaults to `None`: `./mlruns`,
            a local file store.

    Example:

    >>> TrainingConfig("efficientnet_lite0", head="logreg").head
    'logreg'
    """

    backbone: str = option(None, Flag(
        "--backbone", "catalogue name (see `transferkit backbones`), or your own model: a "
        ".keras file, a transferkit run folder or a KerasHub preset folder", metavar="NAME|PATH"))
    cut_at: str | None = option(None, Flag(
        "--cut-at", "with --backbone PATH: the layer where your model ends (its output feeds "
        "the new head)", metavar="LAYER|auto",
        show="auto: a transferkit model's backbone, else the last layer before the output"),
        _text_or_none)
    head: str = option("auto", Flag(
        "--head", "softmax: fine-tune with a Dense head (a sigmoid per label for multi-label "
        "tables, linear for regression); logreg, linear-svm: a linear classifier on the frozen "
        "features, C chosen by cross-validation; ridge: ridge regression on them (numeric "
        f"targets); auto: logreg under {SMALL_DATA:,} training images unless a fine-tuning "
        "option is given (seed 001; measured in bench/README.md), else and for numeric "
        "targets softmax",
        choices=HEADS), _one_of(*HEADS))
    epochs: tuple | None = option(None, Flag(
        "--epochs", "epochs of the head phase and the fine-tuning phase", metavar="HEAD,FINE",
        parse=_counts, show=_by_modality("epochs")), _epochs)
    learning_rate: float = option(1e-3, Flag(
        "--lr", "learning rate of the head phase, optionally the fine-tuning one (which "
        "sets --fine-tune-factor)", metavar="LR[,LR2]", parse=_rates))
    fine_tune_factor: float | None = option(None, Flag(
        "--fine-tune-factor", "fine-tuning rate = head rate x this", metavar="F", parse=float,
        show=_by_modality("fine_tune_factor") + f" ({LORA_FINE_TUNE_FACTOR:g} with --lora)"),
        _fine_tune_factor)
    unfreeze: str = option("all", Flag(
        "--unfreeze", "what trains in phase 2: all, none, last:N, fraction:F, from:LAYER, "
        "blocks:N", metavar="PLAN"), _plan)
    optimizer: str = option("adam", Flag(
        "--optimizer", "adam, adamw, sgd, rmsprop, nadam, adagrad, with parameters: "
        "sgd:momentum=0.9,nesterov=true or adamw:weight_decay=1e-4", metavar="SPEC"))
    schedule: str | None = option(None, Flag(
        "--schedule", "learning-rate schedule per phase: power:s=1000,c=1, exponential:s=2000, "
        "piecewise:boundaries=100/200,values=1e-3/1e-4/1e-5, plateau:factor=0.5,patience=2, "
        "cosine:warmup=0.05, 1cycle:max_lr=1e-2, constant", metavar="SPEC",
        show=_by_modality("schedule")))
    lr_decay: float | None = option(None, Flag(
        "--lr-decay", "discriminative fine-tuning: each backbone block trains at RATIO times "
        "the rate of the block after it, the head at the full rate", metavar="RATIO",
        parse=float, show="off"), _lr_decay)
    batchnorm: str = option("frozen", Flag(
        "--batchnorm", "BatchNormalization layers: frozen (inference mode) or train",
        choices=("frozen", "train"),
        aliases=(Alias("--train-batchnorm", "shorthand for --batchnorm train", "train"),)),
        _one_of("frozen", "train"))
    kernel: str | None = option(None, Flag(
        "--kernel", "kernel penalty, e.g. l2:1e-4", metavar="SPEC", show="none"),
        _spec_or_none(_penalty))
    bias: str | None = option(None, Flag(
        "--bias", "bias penalty, e.g. l1:1e-5", metavar="SPEC", show="none"),
        _spec_or_none(_penalty))
    dropout: float = option(0.2, Flag(
        "--dropout", "dropout before the head", metavar="RATE", parse=float), _rate)
    dropout_after: str | None = option(None, Flag(
        "--dropout-after", "insert dropout into the pretrained graph: blocks (after each "
        "backbone block) or layer names like backbone/block_6_add,...", metavar="WHERE",
        show="none"), _dropout_after)
    dropout_after_rate: float = option(0.1, Flag(
        "--dropout-after-rate", "rate of the --dropout-after layers", metavar="RATE",
        parse=float), _rate)
    dropout_kind: str = option("dropout", Flag(
        "--dropout-kind", "what --dropout-after drops: units (dropout) or whole feature maps "
        "(spatial)", choices=("dropout", "spatial"),
        aliases=(Alias("--spatial-dropout", "shorthand for --dropout-kind spatial",
                       "spatial"),)), _one_of("dropout", "spatial"))
    kernel_constraint: str | None = option(None, Flag(
        "--kernel-constraint", "constraint on every kernel: max_norm:3, unit_norm, non_neg, "
        "min_max_norm:0.5,2", metavar="SPEC", show="none",
        aliases=(Alias("--max-norm", "shorthand for --kernel-constraint max_norm:C",
                       parse=_max_norm, metavar="C"),)),
        _spec_or_none(_constraint))
    augment: object = option(True, Flag(
        "--augment", "augmentation: default, none, or e.g. flip=horizontal,rotate=0.1,"
        "shift=0.1,zoom=0.2,contrast=0.2 (also Keras' randaugment=0.5, erasing=0.25)",
        metavar="SPEC", show="default",
        aliases=(Alias("--no-augment", "no augmentation", "none"),)), _augment)
    augmented_copies: int = option(0, Flag(
        "--augmented-copies", "with augmentation on, train the frozen head phase on K "
        "augmented copies of the features computed once (0: through the backbone every "
        "epoch)", metavar="K", parse=int), _int_at_least(0))
    image_size: int | None = option(None, Flag(
        "--image-size", "image side in pixels", metavar="PIXELS", parse=int,
        show="the backbone's; for a linear head its linear size where measured"),
        _int_at_least(1, none_ok=True))
    crop: str | None = option(None, Flag(
        "--crop", "none: resize whole images to the square; center: keep the aspect ratio, "
        "crop the centre", choices=("none", "center"), parse=_none_if("none"), show="none"),
        _one_of(None, "center"))
    batch_size: int = option(32, Flag(
        "--batch-size", "examples per batch: the global batch, split evenly across --devices",
        metavar="N", parse=int), _int_at_least(1))
    devices: object = option(1, Flag(
        "--devices", "train data-parallel on N devices of this machine (GPUs; a CPU is split "
        "into N logical devices, for testing), or all: Keras' own engines "
        "(tf.distribute, keras.distribution)", metavar="N|all", parse=parse_devices),
        check_devices)
    model_parallel: int | None = option(None, Flag(
        "--model-parallel", "JAX: split each large kernel over M of the --devices "
        "(keras.distribution.ModelParallel), data-parallel over the rest: for a model too big "
        "for one device", metavar="M", parse=int, show="off"), _int_at_least(1, none_ok=True))
    scale_lr: bool = option(False, Flag(
        "--scale-lr", "multiply the learning rates by the number of devices (the linear "
        "scaling rule), for a --batch-size grown with them"), _one_of(False, True))
    patience: int | None = option(5, Flag(
        "--patience", "early-stopping patience in epochs, 0 for none", metavar="EPOCHS",
        parse=_positive_int_or_none), _int_at_least(1, none_ok=True))
    seed: int | None = option(0, Flag("--seed", "random seed", metavar="N", parse=int), _seed)
    weights: str | None = option("imagenet", Flag(
        "--weights", "imagenet, none, or a weights file", metavar="WEIGHTS",
        parse=_none_if("none")))
    from_scratch: bool = option(False, Flag(
        "--from-scratch", "baseline: same architecture, random weights, one phase with "
        "everything trainable for the sum of --epochs"), _one_of(False, True))
    monitor: str = option("val_loss", Flag(
        "--monitor", "what picks the best epoch and stops a phase early: val_loss, "
        "val_accuracy, or val_macro_f1 (for skewed classes)", choices=MONITORS),
        _one_of(*MONITORS))
    class_weight: object = option(None, Flag(
        "--class-weight", "weigh each class in the loss: balanced (n / (k * n_class)), none, "
        "or a .json/.csv file of class weights", metavar="balanced|none|FILE", show="none"),
        check_class_weight)
    loss: str = option("auto", Flag(
        "--loss", "regression targets: mse, mae or huber (delta: one standard deviation); "
        "auto: mse, or cross-entropy for classes and labels", choices=LOSSES),
        _one_of(*LOSSES))
    balanced_batches: bool = option(False, Flag(
        "--balanced-batches", "draw each epoch's training examples with probability inverse "
        "to their class's frequency, every class equally likely per batch (instead of "
        "--class-weight; softmax head)"), _one_of(False, True))
    precision: str = option("float32", Flag(
        "--precision", "mixed: the backbone computes in bfloat16 (CPU) or float16 (GPU), the "
        "head and the loss in float32", choices=PRECISIONS), _one_of(*PRECISIONS))
    max_length: int | None = option(None, Flag(
        "--max-length", "text backbones: tokens per text, longer texts are cut",
        metavar="TOKENS", parse=int, show="the smallest multiple of 8 covering 99 in 100 of the "
        "training texts, at most the model's 512"), _int_at_least(2, none_ok=True))
    lora: int | None = option(None, Flag(
        "--lora", "fine-tune rank-R low-rank adapters of the attention projections instead "
        "of every weight (text backbones)", metavar="RANK", parse=_positive_int_or_none,
        show="off"), _int_at_least(1, none_ok=True))
    log: tuple = option(("csv",), Flag(
        "--log", "live logs of the epochs, comma-separated: csv (training_log.csv in the run "
        "folder), tensorboard (logs/ in the run folder), mlflow (a run in --mlflow-uri); none "
        "for none", metavar="KIND,..."), _log)
    mlflow_uri: str | None = option(None, Flag(
        "--mlflow-uri", "MLflow tracking URI for --log mlflow", metavar="URI",
        show="./mlruns, a local file store"), _text_or_none)

    def __post_init__(self):
        if self.backbone is None:
            raise TransferkitError("A backbone is needed, like 'efficientnet_lite0' "
                                   "(`transferkit backbones` lists them).")
        if isinstance(self.backbone, os.PathLike):
            object.__setattr__(self, "backbone", os.fspath(self.backbone))
        if self.devices != 1 or self.model_parallel not in (None, 1):
            # First: TensorFlow fixes its devices at its first operation.
            placement(check_devices("devices", self.devices),
                      _int_at_least(1, none_ok=True)("model_parallel", self.model_parallel))
        backbone = self.backbone_config
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            if check is not None:
                object.__setattr__(self, field.name, check(field.name, getattr(self, field.name)))
        if self.head in LINEAR_HEADS and self.from_scratch:
            raise TransferkitError(
                f"head={self.head!r} classifies pretrained features; it cannot be combined "
                "with from_scratch (random weights give no features worth a linear classifier)."
            )
        if self.image_size is not None and self.image_size < backbone.min_size:
            raise TransferkitError(
                f"{backbone.name} needs images of at least {backbone.min_size} pixels; got "
                f"image_size={self.image_size}."
            )
        if self.precision == "mixed" and hasattr(backbone, "load"):
            raise TransferkitError(
                "precision='mixed' builds catalogue backbones under the policy; your model "
                f"{self.backbone} keeps its own dtypes (save it in mixed precision instead).")
        if backbone.modality == "text":
            self._check_text(backbone)
        elif self.max_length is not None or self.lora is not None:
            raise TransferkitError(
                f"{'max_length' if self.max_length is not None else 'lora'} is for text "
                f"backbones; {backbone.name} reads images (image_size sets their size).")
        self._check_sampling()
        if self.mlflow_uri is not None and "mlflow" not in self.log:
            raise TransferkitError(f"mlflow_uri={self.mlflow_uri!r} is for log 'mlflow'; add "
                                   "mlflow to log (--log csv,mlflow), or leave it out.")
        self._check_against(backbone)
        self.phases()  # the learning rates, optimizer and schedule, checked

    def _check_sampling(self):
        """Balanced batches and MixUp/CutMix: for trained (softmax) heads, not both weightings."""
        from transferkit.data import augment

        parsed = augment.parse(self.augment)
        mixing = [f"{key}={getattr(parsed, key):g}" for key in augment.MIXING
                  if parsed is not None and getattr(parsed, key)]
        for name, on in (("balanced_batches", self.balanced_batches),
                         (f"augment {','.join(mixing)}", mixing)):
            if on and self.linear:
                raise TransferkitError(
                    f"{name}: for trained heads; head={self.head!r} fits a linear classifier "
                    "on all the features at once, with no batches (use --head softmax).")
        if self.balanced_batches and self.class_weight is not None:
            raise TransferkitError(
                "balanced_batches and class_weight both correct for skewed classes: use one "
                "(balanced batches draw rare classes more often, class weights weigh them more).")

    def _check_text(self, backbone):
        """The options that mean nothing for a text backbone are refused, not ignored."""
        given = [name for name, unset in (("image_size", None), ("crop", None),
                                          ("augmented_copies", 0), ("dropout_after", None))
                 if getattr(self, name) != unset]
        if self.augment not in (True, False, None, "none", "default"):
            given.append("augment")
        if given:
            raise TransferkitError(
                f"{', '.join(given)}: image options; {backbone.name} reads text (max_length "
                "sets the tokens per text).")
        if self.max_length is not None and self.max_length > MAX_SEQUENCE_LENGTH:
            raise TransferkitError(
                f"max_length={self.max_length}: {backbone.name} takes at most "
                f"{MAX_SEQUENCE_LENGTH} tokens per text.")

    @property
    def backbone_config(self):
        """The backbone's `BackboneConfig`: a catalogue entry, or your model cut at `cut_at`."""
        from transferkit.backbones.source import resolve_backbone

        return resolve_backbone(self.backbone, cut_at=self.cut_at)

    @property
    def modality(self):
        """What the backbone reads: `"image"` or `"text"`."""
        return self.backbone_config.modality

    def recipe_value(self, name):
        """The field `name`, or, when it is `None`, the backbone's default for it.

        With LoRA the fine-tuning factor defaults to `LORA_FINE_TUNE_FACTOR`.

        Example:

        >>> TrainingConfig("efficientnet_lite0").recipe_value("epochs")
        (5, 10)
        """
        value = getattr(self, name)
        if value is None and name == "fine_tune_factor" and self.lora is not None:
            return LORA_FINE_TUNE_FACTOR
        if value is None and name in RECIPE_DEFAULTS[self.modality]:
            return RECIPE_DEFAULTS[self.modality][name]
        return value

    def _check_against(self, backbone):
        """What can be known from the catalogue entry, before any model is built."""
        from transferkit.data.images import check_memory
        from transferkit.models.plans import parse_plan

        plan = parse_plan(self.unfreeze)
        if plan.kind == "blocks" and plan.value > len(backbone.blocks):
            raise TransferkitError(
                f"Freeze plan {plan}: {backbone.name} has {len(backbone.blocks)} blocks"
                + (f" ({backbone.blocks[0]} .. {backbone.blocks[-1]}); use at most "
                   f"blocks:{len(backbone.blocks)}." if backbone.blocks
                   else "; use last:N, fraction:F or from:LAYER.")
            )
        if self.weights not in (None, "imagenet"):
            _check_weights_file(self.weights)
        size = self.image_size or backbone.input_size(linear=self.linear)
        reused = hasattr(backbone, "load")  # your own model: its layers, blocks included
        if (plan.kind in ("last", "fraction", "from") or reused and plan.kind == "blocks") \
                and backbone.modality == "image":
            # Against the backbone's layers: its architecture, without weights.
            from transferkit.backbones.loading import load_backbone
            from transferkit.models.freezing import check_plan

            architecture = backbone.load(weights=None) if reused else \
                load_backbone(backbone.name, weights=None, input_shape=(size, size, 3))
            check_plan(architecture, plan, blocks=backbone)
        # One batch as the backbone's float32 input: the least a step needs.
        check_memory(self.batch_size * size * size * 3 * 4,
                     f"A batch of {self.batch_size} images at {size}x{size}",
                     "lower --image-size or --batch-size")

    @property
    def linear(self):
        """Whether the head is a linear classifier on frozen features (not yet for `"auto"`)."""
        return self.head in LINEAR_HEADS

    def for_task(self, task):
        """Checks this configuration against what the data asks for: `task` in `TASKS`.

        The head, loss, monitor and class weights each fit some tasks only;
        a mismatch is one line, before any training. Returns `self`.

        Example:

        >>> TrainingConfig("efficientnet_lite0", head="ridge").for_task("classes")
        Traceback (most recent call last):
        ...
        transferkit.errors.TransferkitError: head='ridge' predicts numbers; ...
        """
        if task not in TASKS:
            raise TransferkitError(f"Unknown task {task!r}; use one of {', '.join(TASKS)}.")
        wrong = None
        if self.head == "ridge" and task != "regression":
            wrong = (f"head='ridge' predicts numbers; these are {_TASK_NOUNS[task]}: use "
                     "--head logreg or softmax")
        elif task == "regression" and self.head in ("logreg", "linear-svm"):
            wrong = (f"head={self.head!r} classifies; a numeric target takes --head ridge "
                     "(linear, on frozen features) or softmax (fine-tuned, linear output)")
        elif task == "multilabel" and self.head == "linear-svm":
            wrong = ("head='linear-svm' gives no probabilities, which multi-label thresholds "
                     "need; use --head logreg or softmax")
        elif self.loss != "auto" and task != "regression":
            wrong = (f"loss={self.loss!r} is for regression; {_TASK_NOUNS[task]} train with "
                     "cross-entropy (leave --loss out)")
        elif task != "classes" and self.monitor != "val_loss":
            wrong = (f"monitor={self.monitor!r} is for classes; {_TASK_NOUNS[task]} are "
                     "watched by val_loss")
        elif task != "classes" and self.class_weight is not None:
            wrong = (f"class_weight is for classes; it does not apply to "
                     f"{_TASK_NOUNS[task]}")
        elif task != "classes" and self.balanced_batches:
            wrong = f"balanced_batches is for classes; it does not apply to {_TASK_NOUNS[task]}"
        elif task != "classes" and self._mixes():
            wrong = (f"mixup, cutmix and augmix serve class labels; leave them out of augment "
                     f"for "
                     f"{_TASK_NOUNS[task]}")
        if wrong:
            raise TransferkitError(wrong + ".")
        return self

    def _mixes(self):
        """Whether `augment` transforms batches in the data pipeline (mixup, cutmix, augmix)."""
        from transferkit.data import augment

        spec = augment.parse(self.augment)
        return spec is not None and spec.mixing() is not None

    def for_data(self, train_images, task="classes"):
        """This configuration with `head="auto"` decided for `train_images` images.

        `"auto"` becomes `"logreg"` when there are fewer than `SMALL_DATA`
        training images, the weights are pretrained and every option only a
        network uses (epochs, rates, freeze plan, augmentation, dropout,
        penalties, ...) is at its default; otherwise `"softmax"`. On
        hymenoptera (245 photos) logistic regression on efficientnet_lite0's
        features scores 0.9477 in 12 s against 0.9346 (mean of three seeds)
        for the tuned two-phase fine-tune in 91 s (bench/README.md); with
        several labels per photo (`task="multilabel"`), 0.911 mAP in 15 s
        against 0.932 in 131 s. A numeric target (`task="regression"`)
        always fine-tunes. `train_images=None` decides `"softmax"` (what
        `compare` and `lr_find` train). Any other head is kept.

        Example:

        >>> config = TrainingConfig("efficientnet_lite0")
        >>> config.for_data(245).head, config.for_data(5000).head
        ('logreg', 'softmax')
        >>> config.for_data(245, "regression").head
        'softmax'
        """
        if self.head != "auto":
            return self
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        fine_tuning = [name for name in _NETWORK_OPTIONS if getattr(self, name) != defaults[name]]
        small = train_images is not None and train_images < SMALL_DATA \
            and self.weights is not None
        # A numeric target fine-tunes: ridge on the pooled features is far
        # behind on hymenoptera's brightness (R^2 0.25 against 0.64,
        # bench/README.md "Labels from a table"); --head ridge still fits it.
        return dataclasses.replace(self, head="logreg" if small and not fine_tuning
                                   and task != "regression" else "softmax")

    def phases(self):
        """The recipe this configuration trains: a list of `Phase`s."""
        from transferkit.training.phases import Phase, default_recipe

        epochs, schedule = self.recipe_value("epochs"), self.recipe_value("schedule")
        recipe = default_recipe(epochs, self.learning_rate,
                                self.recipe_value("fine_tune_factor"), self.unfreeze,
                                self.optimizer, schedule=schedule, lr_decay=self.lr_decay)
        if self.from_scratch:
            recipe = [Phase(sum(epochs), self.learning_rate, "all", self.optimizer,
                            name="scratch", schedule=schedule)]
        return recipe

    def to_dict(self):
        """The fields as JSON-ready values: what `config.json` stores."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values, where="the configuration"):
        """A `TrainingConfig` from `to_dict()`'s form; unknown names are an error."""
        check_names(values, cls.names(), where)
        values = dict(values)
        if "epochs" in values and isinstance(values["epochs"], list):
            values["epochs"] = tuple(values["epochs"])
        return cls(**values)

    @classmethod
    def names(cls):
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))


def _column(text):
    """A column by name, or by position when the text is a number (0 is the first)."""
    return int(text) if text.strip().isdigit() else text


def _header(text):
    return {"yes": True, "no": False, "auto": None}[text]


@dataclasses.dataclass(frozen=True)
class TextColumns:
    """Where the texts and labels are in a labelled text file (text backbones).

    The arguments of `transferkit.data.read_text_file` that a workflow
    passes on; each command that reads text files takes them as flags.

    Args:
        text_column: the text column's name (JSON field), or its position in
            a CSV/TSV file (0 is the first). Defaults to `"text"`.
        label_column: the label column's name or position. Defaults to
            `"label"`.
        header: whether a CSV/TSV file starts with a header row; `None`
            (default) decides: a header for names, none for positions.
        skip_bad_rows: skip malformed rows (named and counted in a warning)
            instead of stopping at the first. Defaults to `False`.

    Example:

    >>> TextColumns(text_column=1, label_column=0).read_arguments()["text"]
    1
    """

    text_column: object = option("text", Flag(
        "--text-column", "text files: the text column, by name or position (0 is the "
        "first)", metavar="NAME|N", parse=_column))
    label_column: object = option("label", Flag(
        "--label-column", "text files: the label column, by name or position",
        metavar="NAME|N", parse=_column))
    header: bool | None = option(None, Flag(
        "--header", "text files: whether a CSV/TSV file starts with a header row",
        choices=("yes", "no", "auto"), parse=_header,
        show="auto: yes for column names, no for positions"))
    skip_bad_rows: bool = option(False, Flag(
        "--skip-bad-rows", "text files and label tables: skip malformed rows (counted and "
        "named in a warning) instead of stopping at the first"), _one_of(False, True))

    def read_arguments(self):
        """The keywords of `read_text_file`."""
        return {"text": self.text_column, "label": self.label_column, "header": self.header,
                "skip_bad_rows": self.skip_bad_rows}


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Labels from a table instead of class subfolders (image backbones).

    The arguments of `transferkit.data.read_label_table` that a workflow
    passes on; each command that reads image folders takes them as flags.

    Args:
        labels: the CSV/TSV of file names (relative to the image folder)
            and labels. Defaults to `None`: one subfolder per class.
        val_labels: the table of the validation folder (`val`). Defaults to
            `None`: `labels`, when `val` is not given.
        task: `"auto"` (default: decided from the values), `"classes"`,
            `"multilabel"` or `"regression"`.
        file_column: the file column. Defaults to `None`: the column named
            file, filename, path or image, else the first.
        label_columns: the label columns, comma-separated. Defaults to
            `None`: every other column.

    Example:

    >>> LabelTable("labels.csv", task="regression").read_arguments()["task"]
    'regression'
    """

    labels: str | None = option(None, Flag(
        "--labels", "image folders: a CSV of file names and labels (a class, several 0/1 "
        "columns or a ;-separated list, or a number) instead of class subfolders",
        metavar="TABLE"), _text_or_none)
    val_labels: str | None = option(None, Flag(
        "--val-labels", "the label table of the --val folder", metavar="TABLE"),
        _text_or_none)
    task: str = option("auto", Flag(
        "--task", "what the table's labels are: classes, multilabel or regression; auto "
        "decides from the values", choices=("auto",) + TASKS), _one_of("auto", *TASKS))
    file_column: str | None = option(None, Flag(
        "--file-column", "the table's file column", metavar="NAME",
        show="file, filename, path or image, else the first"), _text_or_none)
    label_columns: str | None = option(None, Flag(
        "--label-columns", "the table's label columns, comma-separated", metavar="A,B,...",
        show="every other column"), _text_or_none)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name,
                               field.metadata["check"](field.name, getattr(self, field.name)))

    def read_arguments(self, skip_bad_rows=False):
        """The keywords of `read_label_table`, but the table."""
        return {"task": self.task, "file_column": self.file_column,
                "label_columns": self.label_columns, "skip_bad_rows": skip_bad_rows}


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Several processes (one per machine) training one model: JAX's coordinator.

    `join()` is `transferkit.training.distribution.initialize`: call it first
    in every process. Process 0 writes the run folder; the others write
    nothing. TensorFlow's processes find one another through `TF_CONFIG`
    instead, which needs none of these.

    Args:
        coordinator: `"host:port"` of process 0, the same in every process.
        num_processes: how many processes train together.
        process_id: this process's index, `0` to `num_processes - 1`.

    Example:

    >>> Cluster("10.0.0.1:1234", 2, 0).join()  # doctest: +SKIP
    """

    coordinator: str | None = option(None, Flag(
        "--coordinator", "several machines (JAX): HOST:PORT of process 0, the same in every "
        "process; TensorFlow reads TF_CONFIG instead", metavar="HOST:PORT", show="one process"),
        _text_or_none)
    num_processes: int | None = option(None, Flag(
        "--num-processes", "several machines (JAX): how many processes train together",
        metavar="N", parse=int), _int_at_least(1, none_ok=True))
    process_id: int | None = option(None, Flag(
        "--process-id", "several machines (JAX): this process's index, 0 to N-1 (0 writes the "
        "run folder)", metavar="I", parse=int), _int_at_least(0, none_ok=True))

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name,
                               field.metadata["check"](field.name, getattr(self, field.name)))

    def join(self):
        """Joins the other processes (`initialize`); returns `self`."""
        from transferkit.training.distribution import initialize

        initialize(self.coordinator, self.num_processes, self.process_id)
        return self


def training_config(backbone, options, where):
    """The `TrainingConfig` of a workflow's `backbone` and `**options`.

    `backbone` is a catalogue name, or a whole `TrainingConfig` that
    `options` then change (`dataclasses.replace`). An unknown option name is
    one line naming `where` and the closest option.

    Example:

    >>> training_config("efficientnet_lite0", {"epochs": (3, 6)}, "train").epochs
    (3, 6)
    """
    names = tuple(n for n in TrainingConfig.names() if n != "backbone")
    check_names(options, names, where)
    if isinstance(backbone, TrainingConfig):
        return dataclasses.replace(backbone, **options)
    return TrainingConfig(backbone, **options)


def check_log_packages(kinds):
    """Fails with one line naming the extra to install when a log of `kinds` lacks its package.

    Example:

    >>> check_log_packages(("csv",))  # csv needs nothing more
    """
    import importlib.util

    for kind in kinds:
        if kind in _LOG_PACKAGES and importlib.util.find_spec(_LOG_PACKAGES[kind]) is None:
            raise TransferkitError(
                f"--log {kind} needs the {_LOG_PACKAGES[kind]} package: "
                f"pip install 'transferkit[{kind}]'.")


def check_names(options, allowed, where):
    """Fails with one line (and a suggestion) if `options` has names not in `allowed`."""
    for name in options:
        if name not in allowed:
            hint = difflib.get_close_matches(str(name), list(allowed), n=1)
            raise TransferkitError(
                f"Unknown option {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f" in {where}; the options are {', '.join(allowed)}."
            )


# --------------------------------------------------------------------------
# The command line, generated from the fields.


def add_arguments(parser, *, defaults=True, exclude=(), fields_of=None):
    """Adds a flag per field (and its shorthands) to an argparse parser.

    Args:
        parser: an `argparse` parser or group.
        defaults: `True`: each flag's default is the field's; `False`: every
            default is `None`, so that only the flags given count (compare's
            base options, which override a TOML file).
        exclude: field names to leave out (a command's own arguments).
        fields_of: the dataclass whose fields become flags. Defaults to
            `TrainingConfig`.
    """
    for field in dataclasses.fields(fields_of or TrainingConfig):
        if field.name in exclude:
            continue
        flag = field.metadata["flag"]
        default = field.default
        shown = flag.show if flag.show is not None else _show(default)
        text = flag.help + (f" (default {shown})" if defaults else "")
        kwargs = {"dest": field.name, "help": text}
        if field.name == "backbone":
            kwargs["required"] = True
        elif field.type is bool:  # a switch
            kwargs.update(action="store_const", const=True, default=None)
        else:
            kwargs.update(default=None, metavar=flag.metavar, choices=flag.choices)
        parser.add_argument(flag.name, **kwargs)
        for alias in flag.aliases:
            if alias.parse is None:
                # A switch stands for its flag with a value: the last one given wins,
                # as when a flag is repeated.
                parser.add_argument(alias.name, dest=field.name, action="store_const",
                                    const=alias.value, help=alias.help)
            else:
                parser.add_argument(alias.name, dest=_alias_dest(field.name, alias),
                                    default=None, metavar=alias.metavar, help=alias.help)


def from_arguments(args, *, exclude=(), fields_of=None):
    """The fields given on the command line: `{name: value}`, syntax checked.

    Only flags that were given appear (the rest keep the field's default
    when the configuration is made). A field given twice, by its flag and a
    shorthand, is an error.
    """
    values, given_by = {}, {}

    def give(name, value, flag_name):
        if name in given_by:
            raise TransferkitError(f"Give {given_by[name]} or {flag_name}, not both.")
        values[name], given_by[name] = value, flag_name

    for field in dataclasses.fields(fields_of or TrainingConfig):
        if field.name in exclude:
            continue
        flag = field.metadata["flag"]
        text = getattr(args, field.name, None)
        if text is not None:
            value = _parsed(flag, text)
            # A flag may set several fields (--lr LR,LR2 sets the fine-tuning factor too).
            for name, item in (value.items() if isinstance(value, dict)
                               else [(field.name, value)]):
                give(name, item, flag.name)
        for alias in flag.aliases:
            raw = None if alias.parse is None else getattr(
                args, _alias_dest(field.name, alias), None)
            if raw is not None:
                give(field.name, _parsed(alias, raw), alias.name)
    return values


def _parsed(flag, text):
    if flag.parse is None or not isinstance(text, str):
        return text
    try:
        return flag.parse(text)
    except ValueError as e:
        if isinstance(e, TransferkitError):
            raise
        raise TransferkitError(f"{flag.name} takes {flag.metavar or 'a value'}; got "
                               f"{text!r}.") from None


def _alias_dest(name, alias):
    return f"{name}__{alias.name.lstrip('-').replace('-', '_')}"


def _show(default):
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    if default is None:
        return "none"
    return f"{default:g}" if isinstance(default, float) else str(default)
