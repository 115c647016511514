"""Your own model as the backbone (seed 003): a `.keras` file, a run folder, a preset folder.

`--backbone PATH` (`TrainingConfig(backbone=PATH, cut_at=...)`) starts a new
task B from a model A that exists on disk:

- a `.keras` file (loaded in safe mode);
- a transferkit run folder (its `model.keras`): A's pretrained backbone is
  reused, and when A's backbone came from the catalogue its blocks come with
  it, so `unfreeze="blocks:N"` and `lr_decay` work;
- a KerasHub image preset folder (what `save_to_preset` writes).

`cut_at` says where A ends: a layer name (a top-level layer, or one inside
A's nested `"backbone"`), or `"auto"` (the default): A's nested `"backbone"`
when it has one (a transferkit model: its augmentation, pooling, dropout and
head are left behind), all of a preset (a backbone already), else the last
layer before A's output layer that is not a dropout. What A does to raw images (its preprocessing) stays in the
reused part, so a model trained by transferkit on raw images keeps taking
raw images. Every `load` reads the file afresh: model B never shares a
weight with A, and the file is only read (its SHA-256 is recorded).

Example:

>>> source = source_backbone("runs/a")  # doctest: +SKIP
>>> source.cut_at, source.blocks[:2]  # doctest: +SKIP
('backbone', ('stem', 'block1'))
"""

import dataclasses
import functools
import json
import os

from transferkit.backbones.registry import BackboneConfig, get_backbone_config
from transferkit.errors import TransferkitError

AUTO = "auto"
MODEL_FILE = "model.keras"
# A transferkit model's nested backbone and augmentation (`transferkit.build`).
_BACKBONE, _AUGMENT = "backbone", "augment"


@dataclasses.dataclass(frozen=True)
class SourceBackbone(BackboneConfig):
    """A catalogue entry for a model on disk: what `source_backbone` returns.

    Attributes (besides `BackboneConfig`'s):
        path: the path as given.
        kind: `"keras"`, `"run"` or `"preset"`.
        model_file: the file (or preset folder) read.
        sha256: the model file's SHA-256 (`None` for a preset folder).
        cut_at: the layer A was cut at (resolved from `"auto"`).
        catalogue: A's catalogue backbone, when A is a transferkit model of
            one (its blocks are this entry's), else `None`.
    """

    path: str = ""
    kind: str = "keras"
    model_file: str = ""
    sha256: str | None = None
    cut_at: str = ""
    catalogue: str | None = None

    def load(self, weights="source"):
        """Model A's reused part, read afresh: `weights=None` gives its architecture untrained."""
        return self.loader(weights=weights)

    def describe(self):
        """What `config.json` records of the source."""
        return {"path": self.path, "kind": self.kind, "file": self.model_file,
                "sha256": self.sha256, "cut_at": self.cut_at, "catalogue": self.catalogue}


def resolve_backbone(name, cut_at=None):
    """The `BackboneConfig` of a catalogue name, or the `SourceBackbone` of a path.

    `cut_at` (a layer name or `"auto"`) is for paths only: a catalogue
    backbone ends where its family ends.

    Example:

    >>> resolve_backbone("resnet50").default_size  # doctest: +SKIP
    224
    >>> resolve_backbone("runs/a").cut_at  # doctest: +SKIP
    'backbone'
    """
    if isinstance(name, (str, os.PathLike)) and looks_like_path(name):
        return source_backbone(name, cut_at)
    config = get_backbone_config(name)
    if cut_at is not None:
        raise TransferkitError(f"cut_at is for a backbone given by path (your own model); "
                               f"{config.name} is a catalogue backbone.")
    return config


def looks_like_path(text):
    """Whether a backbone name is a path: it ends in `.keras`, has a separator, or exists."""
    return isinstance(text, (str, os.PathLike)) and (
        os.fspath(text).endswith(".keras") or os.sep in os.fspath(text)
        or os.path.exists(os.fspath(text)))


def source_backbone(path, cut_at=None):
    """The `SourceBackbone` of model A at `path`, cut at `cut_at` (`None`: `"auto"`).

    Loads A once (safe mode) to resolve the cut and check it: an unknown
    layer, or a cut that leaves no features (the input, a non-feature
    output), is one line here, before any image is read.
    """
    path = os.fspath(path)
    kind, model_file, catalogue = _locate(path)
    stat = os.stat(model_file)
    return _described(path, kind, model_file, catalogue, stat.st_mtime_ns, stat.st_size,
                      AUTO if cut_at is None else cut_at)


@functools.lru_cache(maxsize=8)
def _described(path, kind, model_file, catalogue, mtime, size, cut_at):
    """`source_backbone`, once per file version and cut."""
    from transferkit.saving import file_sha256

    model = _read(kind, model_file)
    if kind == "preset" and cut_at == AUTO:  # a backbone already: all of it
        cut_at = model.layers[-1].name
    trunk, resolved = _trunk(model, cut_at, path)
    shape = tuple(trunk.inputs[0].shape[1:])
    if "int" in str(trunk.inputs[0].dtype) or len(shape) != 3:
        raise TransferkitError(
            f"{path} takes {'token ids' if 'int' in str(trunk.inputs[0].dtype) else shape}; a "
            "model as backbone must take images (height, width, 3). Text models can be reused "
            "in Python (transferkit.reuse).")
    entry = get_backbone_config(catalogue) if catalogue else None
    side = shape[0] or (entry.default_size if entry else 224)
    parameters = int(trunk.count_params())
    del model, trunk
    return SourceBackbone(
        name=os.path.basename(os.path.normpath(path)) or path,
        builder=None,
        loader=functools.partial(_load, kind, model_file, resolved),
        default_size=int(side), min_size=int(shape[0] or (entry.min_size if entry else 32)),
        preprocessing="inside", preprocess_input=None,
        blocks=entry.blocks if entry else (), parameters=parameters,
        path=path, kind=kind, model_file=model_file,
        sha256=None if kind == "preset" else file_sha256(model_file),
        cut_at=resolved, catalogue=catalogue)


def _locate(path):
    """`(kind, the file or folder to read, A's catalogue backbone or None)`."""
    if not os.path.exists(path):
        raise TransferkitError(f"Backbone {path} does not exist; give a .keras file, a "
                               "transferkit run folder or a KerasHub preset folder (or a "
                               "catalogue name: transferkit backbones).")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise TransferkitError(f"Backbone {path} is not a .keras file; give a model saved "
                                   "with model.save('model.keras'), a run folder or a preset "
                                   "folder.")
        return "keras", path, None
    model_file = os.path.join(path, MODEL_FILE)
    config_file = os.path.join(path, "config.json")
    if os.path.isfile(model_file):
        return "run", model_file, _catalogue_of(config_file)
    if os.path.isfile(config_file):
        return "preset", path, None
    raise TransferkitError(f"Backbone folder {path} holds neither {MODEL_FILE} (a transferkit "
                           "run) nor config.json (a KerasHub preset); give one of those.")


def _catalogue_of(config_file):
    """A run's catalogue backbone (its blocks apply to the reused part), or `None`."""
    try:
        with open(config_file, encoding="utf-8") as f:
            name = json.load(f).get("backbone")
        return get_backbone_config(name).name if isinstance(name, str) else None
    except (OSError, ValueError, TransferkitError):
        return None


def _read(kind, model_file):
    if kind == "preset":
        from transferkit.backbones.hub import load_preset

        return load_preset(model_file)
    from transferkit.saving import load_model

    return load_model(model_file, compile=False)  # one line for a corrupt file


def _load(kind, model_file, cut_at, weights="source"):
    """A's part up to `cut_at`, read afresh; `weights=None`: the same layers, untrained."""
    import keras

    trunk, _ = _trunk(_read(kind, model_file), cut_at, model_file)
    if weights is None:
        trunk = keras.models.clone_model(trunk)  # new weights, initialized afresh
    return trunk


def _trunk(model, cut_at, where):
    """`(model A up to the cut, the cut's layer name)`."""
    import keras

    from transferkit.backbones.loading import cut_model

    names = [layer.name for layer in model.layers]
    nested = model.get_layer(_BACKBONE) if _BACKBONE in names and isinstance(
        model.get_layer(_BACKBONE), keras.Model) else None
    if cut_at == AUTO:
        if nested is not None:
            return nested, _BACKBONE
        cut_at = _before_output(model, where)
    if cut_at in names:
        layer = model.get_layer(cut_at)
        if isinstance(layer, keras.layers.InputLayer) or names.index(cut_at) == 0:
            raise TransferkitError(f"Cutting {where} at {cut_at!r}, its input, leaves no "
                                   "features; cut at a later layer (or auto).")
        if cut_at == _BACKBONE and nested is not None:
            trunk = nested
        elif cut_at == names[-1] and len(model.outputs) == 1:
            trunk = model  # all of it
        elif _AUGMENT in names and names.index(cut_at) > names.index(_AUGMENT):
            trunk = _without(model, _AUGMENT, cut_at)
        else:
            trunk = cut_model(model, cut_at)
    elif nested is not None and cut_at in [layer.name for layer in nested.layers]:
        trunk = cut_model(nested, cut_at)
    else:
        import difflib

        inner = [layer.name for layer in nested.layers] if nested is not None else []
        close = difflib.get_close_matches(str(cut_at), names + inner, n=1)
        raise TransferkitError(
            f"{where} has no layer {cut_at!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                 else "")
            + f"; its last layers are {', '.join(names[-6:])}"
            + (f", and its backbone's {', '.join(inner[-3:])}" if inner else "") + ".")
    rank = len(trunk.outputs[0].shape)
    if rank not in (2, 4):
        raise TransferkitError(
            f"Cutting {where} at {cut_at!r} gives outputs of shape "
            f"{tuple(trunk.outputs[0].shape[1:])}, not features (vectors, or a feature map "
            "to pool); cut at another layer.")
    return trunk, cut_at


def _before_output(model, where):
    """The last layer before `model`'s output layer that is not a dropout."""
    import keras

    candidates = [layer for layer in model.layers[:-1]
                  if not isinstance(layer, (keras.layers.Dropout, keras.layers.InputLayer))]
    if not candidates:
        raise TransferkitError(f"{where} has no layer before its output to reuse; give a "
                               "model with hidden layers.")
    return candidates[-1].name


def _without(model, skipped, last):
    """`model`'s chain of top-level layers up to `last`, leaving `skipped` out.

    For transferkit models (input, augmentation, backbone, pooling, dropout,
    head: one chain), so that B does not inherit A's training augmentation.
    """
    import keras

    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name == skipped:
            continue
        x = layer(x)
        if layer.name == last:
            break
    return keras.Model(inputs, x, name=model.name)
