"""Inserting dropout into a built, pretrained model, keeping every weight."""

import dataclasses
import difflib
import numbers
import re

import keras

from transferkit._compat import graph_nodes, set_own_trainable, source_layer
from transferkit._walk import iter_layers, stores_layer_configs
from transferkit.errors import TransferkitError
from transferkit.models.freezing import block_names

KINDS = ("dropout", "spatial")
BACKBONE = "backbone"
HEAD = "head"

# SpatialDropout drops whole feature maps: the layer is chosen by the rank of
# the tensor it goes on (batch included).
_SPATIAL = {
    3: keras.layers.SpatialDropout1D,
    4: keras.layers.SpatialDropout2D,
    5: keras.layers.SpatialDropout3D,
}


def insert_dropout(
    model, rate, *, where=HEAD, kind="dropout", seed=None, blocks=None, backbone=BACKBONE
):
    """Returns a copy of `model` with dropout inserted, sharing all its weights.

    Dropout cannot be switched on in a built model by setting an attribute:
    it has to sit in the graph. This rebuilds the functional graph around the
    *same* layer objects, adding `Dropout` layers where asked, so every
    pretrained weight is kept bit for bit (the variables are shared, not
    copied), trainable flags, layer names and the model's name stay, and the
    result saves to `.keras` like any functional model. A nested model (the
    `"backbone"` of a `transferkit.build` model) is rebuilt the same way when
    dropout goes inside it.

    Where a dropout layer already follows the place asked for (the
    `"dropout"` layer that `build(..., dropout=0.2)` puts before the head,
    say), it is replaced by one with the new `rate` instead of stacking a
    second one, so that asking twice for `rate=0.3` gives a rate of 0.3 and
    not an effective 0.51. A rate of 0 inserts dropout layers that do nothing
    (and sets an existing one to 0).

    Inserted layers are named `"dropout_after_<layer>"`; replaced ones keep
    their names. Dropout is only active in training (`fit`, or
    `model(x, training=True)`): predictions are unchanged.

    Args:
        model: a built functional or `Sequential` Keras model.
        rate: float in [0, 1), the fraction of units to drop.
        where: where the dropout goes:
            - `"head"` (default): before the classifier, i.e. on the input of
              the layer named `"head"` (the `Dense` head of a
              `transferkit.build` model), or else of the last layer with
              weights on the way to each output (so a final
              `Activation("softmax")` is stepped over).
            - `"blocks"`: after the last layer of each block of the nested
              backbone (or of `model` itself when it has none), e.g. after
              `expanded_conv_2_add` for `mobilenet_v3_small`. The block names
              come from `blocks`.
            - a list of layer names, or one string of comma-separated names:
              after each of these layers. Layers inside a nested model are
              named with their model's name first: `"backbone/block_3_add"`.
              Every layer that reads the named layer's output (both branches
              of a residual connection, say) reads the dropped-out tensor.
        kind: `"dropout"` (default; `keras.layers.Dropout`, drops units) or
            `"spatial"` (`SpatialDropout1D/2D/3D`, chosen by the rank of the
            tensor: drops whole feature maps, for convolutional features).
        seed: optional int seed; the i-th inserted layer gets `seed + i`.
            Defaults to `None`.
        blocks: for `where="blocks"`: a catalogue name (`"resnet50"`), a
            `BackboneConfig`, or the block names as layer-name prefixes (a
            layer belongs to block `"conv2"` when its name starts with
            `conv2` not followed by a digit or `_digit`). Defaults to the
            catalogue name in the model's name (`build` names its models
            `"<backbone>_classifier"`).
        backbone: the name of the nested backbone for `where="blocks"`.
            Defaults to `"backbone"`.

    Returns:
        A new model of the same kind, with the same name, layers (the same
        objects) and weights, compiled like `model` if it was (with a fresh
        optimizer). It shares its layers with `model`: training one trains
        the other, so use it in place of `model`.

    Example:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))
    >>> dropped = insert_dropout(model, 0.5)
    >>> [layer.name for layer in dropped.layers]
    ['input_layer', 'hidden', 'dropout_after_hidden', 'head']
    >>> dropped.get_layer("hidden") is model.get_layer("hidden")
    True
    >>> x = np.ones((2, 4), "float32")
    >>> bool(np.allclose(dropped.predict(x, verbose=0), model.predict(x, verbose=0)))
    True
    """
    rate = _check_rate(rate)
    if kind not in KINDS:
        raise TransferkitError(f"kind must be 'dropout' or 'spatial', got {kind!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TransferkitError(f"seed must be an int or None, got {seed!r}.")
    if not isinstance(model, keras.Model):
        raise TransferkitError(
            f"insert_dropout needs a Keras model, got {type(model).__name__}."
        )
    if not _rebuildable(model):
        raise TransferkitError(
            f"Model {model.name!r} is a subclassed {type(model).__name__}: its graph "
            "cannot be rebuilt. Add dropout to its code, or use a functional model."
        )
    if not model.built or not model.inputs:
        raise TransferkitError(
            f"Model {model.name!r} is not built: give it a keras.Input (or call "
            "build) before inserting dropout."
        )

    root = _Level(model)
    maker = _Maker(rate, kind, seed)
    if isinstance(where, str) and where.strip() == HEAD:
        _plan_head(root, maker)
    elif isinstance(where, str) and where.strip() == "blocks":
        _plan_blocks(root, maker, blocks, backbone)
    else:
        names = _layer_names(where)
        if blocks is not None:
            raise TransferkitError("blocks= is only for where='blocks'; drop it or use where='blocks'.")
        for name in names:
            level, layer = _find(root, name)
            _plan_after(level, layer, name, maker)
    return _rebuild(root)


# ---------------------------------------------------------------- validation


def _check_rate(rate):
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not 0.0 <= float(rate) < 1.0
    ):
        raise TransferkitError(f"rate must be a number in [0, 1), got {rate!r}; e.g. 0.2.")
    return float(rate)


def _rebuildable(model):
    # Functional models with Keras' own `get_config`, and Sequential models,
    # are fully described by their layers and graph; subclassed models and
    # KerasHub backbones are not.
    return stores_layer_configs(model)


def _layer_names(where):
    if isinstance(where, str):
        names = [n.strip() for n in where.split(",") if n.strip()]
    elif isinstance(where, (list, tuple)) and all(isinstance(n, str) for n in where):
        names = [n.strip() for n in where]
    else:
        names = []
    if not names:
        raise TransferkitError(
            f"Invalid where={where!r}: use 'head', 'blocks', or layer names "
            "such as ['backbone/block_3_add']."
        )
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------ the plan


@dataclasses.dataclass
class _Level:
    """What changes inside one (possibly nested) model, keyed by layer id."""

    model: keras.Model
    after: dict = dataclasses.field(default_factory=dict)  # dropout on the outputs
    before: dict = dataclasses.field(default_factory=dict)  # dropout on the inputs
    replace: dict = dataclasses.field(default_factory=dict)  # an existing dropout
    nested: dict = dataclasses.field(default_factory=dict)  # id(model) -> _Level
    _graph: object = None

    @property
    def graph(self):
        if self._graph is None:
            self._graph = _Graph(self.model)
        return self._graph


class _Graph:
    """The edges of one model's own graph (not of other models sharing layers).

    Keras has no public graph API; `graph_nodes` reads the nodes the way
    `keras.models.clone_model` does.
    """

    def __init__(self, model):
        self.outputs, self.inputs, self.consumers = {}, {}, {}
        for op, input_tensors, output_tensors in graph_nodes(model):
            self.outputs.setdefault(id(op), []).extend(output_tensors)
            self.inputs.setdefault(id(op), []).extend(input_tensors)
            for tensor in input_tensors:
                self.consumers.setdefault(id(tensor), []).append(op)
        self.model_outputs = {id(t) for t in model.outputs}

    def consumers_of(self, layer):
        """The layers reading `layer`'s outputs, and whether one is a model output."""
        tensors = self.outputs.get(id(layer), [])
        readers = [op for t in tensors for op in self.consumers.get(id(t), [])]
        return readers, any(id(t) in self.model_outputs for t in tensors)


class _Maker:
    """Makes the dropout layers, numbering seeds in the order they are made."""

    def __init__(self, rate, kind, seed):
        self.rate, self.kind, self.seed, self.count = rate, kind, seed, 0

    def __call__(self, name, rank, place):
        if self.kind == "spatial":
            if rank not in _SPATIAL:
                raise TransferkitError(
                    f"kind='spatial' drops feature maps and needs a tensor of rank 3 to 5; "
                    f"{place} has rank {rank}. Use kind='dropout' there."
                )
            cls = _SPATIAL[rank]
        else:
            cls = keras.layers.Dropout
        seed = None if self.seed is None else int(self.seed) + self.count
        self.count += 1
        return cls(self.rate, seed=seed, name=name)


def _is_dropout(layer):
    # Dropout and SpatialDropout1D/2D/3D (its subclasses); not the noise
    # layers (GaussianDropout, AlphaDropout), which are another regularizer.
    return isinstance(layer, keras.layers.Dropout)


def _rank(tensors, place):
    ranks = {len(t.shape) for t in tensors}
    if len(ranks) != 1:
        raise TransferkitError(f"{place} has outputs of different ranks; name a single-output layer.")
    return ranks.pop()


def _plan_after(level, layer, qualified, maker):
    if isinstance(layer, keras.layers.InputLayer):
        raise TransferkitError(
            f"{qualified!r} is an input layer; name a layer after it (for input "
            "noise, use augmentation)."
        )
    graph = level.graph
    readers, is_output = graph.consumers_of(layer)
    if len(readers) == 1 and not is_output and _is_dropout(readers[0]):
        _plan_replace(level, readers[0], maker, qualified)
        return
    if id(layer) in level.after:
        return
    rank = _rank(graph.outputs[id(layer)], f"the output of {qualified!r}")
    name = _unique_name(level.model, f"dropout_after_{layer.name}")
    level.after[id(layer)] = maker(name, rank, f"the output of {qualified!r}")


def _plan_replace(level, old, maker, qualified):
    if id(old) in level.replace:
        return
    rank = _rank(level.graph.inputs[id(old)], f"the input of {old.name!r}")
    level.replace[id(old)] = maker(old.name, rank, f"the output of {qualified!r}")


def _plan_head(root, maker):
    graph = root.graph
    for head in _classifiers(root.model, graph):
        inputs = graph.inputs[id(head)]
        if len(inputs) != 1:
            raise TransferkitError(
                f"The classifier {head.name!r} takes {len(inputs)} inputs; name the "
                "layers to follow with dropout instead: where=['LAYER', ...]."
            )
        source = source_layer(inputs[0])
        readers = graph.consumers.get(id(inputs[0]), [])
        if _is_dropout(source) and len(readers) == 1:
            _plan_replace(root, source, maker, source.name)
        elif id(head) not in root.before:
            rank = len(inputs[0].shape)
            name = _unique_name(root.model, f"dropout_after_{source.name}")
            root.before[id(head)] = maker(name, rank, f"the input of {head.name!r}")


def _classifiers(model, graph):
    """The layer named `head`, or the last layer with weights before each output."""
    top = {layer.name: layer for layer in model.layers}
    if HEAD in top and top[HEAD].weights:
        return [top[HEAD]]
    found = []
    for tensor in model.outputs:
        layer = source_layer(tensor)
        while not layer.weights:
            inputs = graph.inputs.get(id(layer), [])
            if isinstance(layer, keras.layers.InputLayer) or len(inputs) != 1:
                raise TransferkitError(
                    f"Model {model.name!r} has no single-input layer with weights before "
                    "its output; name the layers to follow with dropout: where=['LAYER']."
                )
            layer = source_layer(inputs[0])
        if all(layer is not f for f in found):
            found.append(layer)
    return found


def _plan_blocks(root, maker, blocks, backbone):
    top = {layer.name: layer for layer in root.model.layers}
    scope, prefix = root, ""
    if isinstance(top.get(backbone), keras.Model):
        scope = _nested(root, top[backbone], backbone)
        prefix = f"{backbone}/"
    names = block_names(blocks, root.model, alternative="name the layers: where=['LAYER', ...]")
    for end in _block_ends(scope.model, names, scope.graph):
        _plan_after(scope, end, prefix + end.name, maker)


def _block_ends(model, blocks, graph):
    """The layer that ends each block: the last one whose output leaves it."""
    ends = []
    for block in blocks:
        pattern = re.compile(re.escape(block) + r"(?!_?\d)")
        members = [layer for layer in model.layers if pattern.match(layer.name)]
        if not members:
            raise TransferkitError(
                f"No layer of {model.name!r} belongs to block {block!r}; check blocks= "
                "or name the layers: where=['LAYER', ...]."
            )
        inside = {id(layer) for layer in members}
        exits = []
        for layer in members:
            readers, is_output = graph.consumers_of(layer)
            if is_output or any(id(r) not in inside for r in readers):
                exits.append(layer)
        ends.append(exits[-1] if exits else members[-1])
    return ends


def _nested(level, layer, qualified):
    if not isinstance(layer, keras.Model) or not _rebuildable(layer):
        raise TransferkitError(
            f"{qualified!r} is a {type(layer).__name__} whose graph cannot be rebuilt "
            "(a subclassed model or composite layer); add dropout after it instead."
        )
    if id(layer) not in level.nested:
        level.nested[id(layer)] = _Level(layer)
    return level.nested[id(layer)]


def _find(root, qualified):
    level, parts = root, qualified.split("/")
    for depth, part in enumerate(parts):
        layers = {layer.name: layer for layer in level.model.layers}
        if part not in layers:
            raise TransferkitError(_unknown(root.model, qualified))
        layer = layers[part]
        if depth < len(parts) - 1:
            level = _nested(level, layer, "/".join(parts[: depth + 1]))
    return level, layer


def _unknown(model, name):
    names = [n for n, _, _ in iter_layers(model)]
    # A layer's own name, given without its enclosing model's: say where it is.
    leaf = [n for n in names if n.rsplit("/", 1)[-1] == name]
    close = leaf[:3] or difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
    return f"Model {model.name!r} has no layer {name!r}{hint}"


def _unique_name(model, name):
    taken = {layer.name for layer in model.layers}
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


# ------------------------------------------------------------------- rebuild


def _rebuild(level):
    model = level.model
    if isinstance(model, keras.Sequential):
        new = _rebuild_sequential(level)
    else:
        new = _rebuild_functional(level)
    # The layers are shared, so their own flags carry over; the model's flag
    # is set without the setter, which would overwrite every layer's. Input
    # layers are new: they take the old ones' flags.
    set_own_trainable(new, model.trainable)
    for old_input, new_input in zip(model.inputs, new.inputs):
        source_layer(new_input).trainable = source_layer(old_input).trainable
    return new


def _swap(level, layer):
    if id(layer) in level.nested:
        return _rebuild(level.nested[id(layer)])
    return level.replace.get(id(layer), layer)


def _rebuild_sequential(level):
    model = level.model
    layers = []
    for layer in model.layers:
        if id(layer) in level.before:
            layers.append(level.before[id(layer)])
        layers.append(_swap(level, layer))
        if id(layer) in level.after:
            layers.append(level.after[id(layer)])
    new = keras.Sequential([_new_input(model.inputs[0])] + layers, name=model.name)
    if model.compiled:
        new.compile_from_config(model.get_compile_config())
    return new


def _rebuild_functional(level):
    original = {}  # id(layer in the new graph) -> id(layer it stands for)

    def clone_function(layer):
        new = _swap(level, layer)
        original[id(new)] = id(layer)
        return new

    def call_function(layer, *args, **kwargs):
        key = original.get(id(layer), id(layer))
        if key in level.before:
            drop = level.before[key]
            args = keras.tree.map_structure(
                lambda t: drop(t) if isinstance(t, keras.KerasTensor) else t, args
            )
        outputs = layer(*args, **kwargs)
        if key in level.after:
            outputs = keras.tree.map_structure(level.after[key], outputs)
        return outputs

    return keras.models.clone_model(
        level.model,
        # New inputs like the old ones, named after their input layers (the
        # default would name them after their tensors).
        input_tensors=keras.tree.map_structure(_new_input, level.model.input),
        clone_function=clone_function,
        call_function=call_function,
    )


def _new_input(tensor):
    layer = source_layer(tensor)
    return keras.Input(
        batch_shape=tensor.shape, dtype=tensor.dtype, sparse=tensor.sparse, name=layer.name
    )
