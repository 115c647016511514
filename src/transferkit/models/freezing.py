"""Freeze plans: which part of a pretrained backbone trains while fine-tuning.

A plan names the part of the backbone that is *trainable*; everything before
it stays frozen, and the layers after the backbone (pooling, dropout, head)
always train. Plans, as strings (the CLI's `--unfreeze`) or values:

- `"none"`: the whole backbone frozen (phase 1 of the recipe);
- `"all"`: the whole backbone trainable;
- `"last:N"` (or an int `N`): the last N layers that hold weights;
- `"fraction:F"` (or a float `F` in (0, 1)): the last fraction F of them;
- `"from:LAYER"`: the named layer and everything after it;
- `"blocks:N"`: the last N blocks of a catalogue backbone (`resnet50` has
  `conv2`..`conv5`), from the end of the block before them onwards.

The strings are transferkit's one spec grammar (`transferkit.specs`); `get`
also takes what `FreezePlan.describe()` returns. Reading and checking a plan
needs no Keras (`transferkit.models.plans`); this module applies it.

Layers are counted in the backbone's topological order (`backbone.layers`).
BatchNormalization layers stay frozen under every plan unless
`batchnorm="train"`: a frozen BatchNormalization layer runs in inference
mode in Keras 3, so it keeps the pretrained moving statistics instead of
replacing them with the statistics of small fine-tuning batches.
"""

import dataclasses

import keras

from transferkit._walk import iter_layers
from transferkit.errors import TransferkitError
from transferkit.models.lora import freeze_all_but_adapters, lora_layers

# Read and checked without Keras; public here too, where they were first.
from transferkit.models.plans import FreezePlan, parse_plan  # noqa: F401

BACKBONE = "backbone"
BATCHNORM_MODES = ("frozen", "train")


@dataclasses.dataclass(frozen=True)
class FreezeSummary:
    """What `freeze` did: counts of the backbone's layers and weights."""

    plan: str
    trainable_layers: int
    frozen_layers: int
    batchnorm_frozen: int
    trainable_params: int
    total_params: int

    def __str__(self):
        text = (
            f"unfreeze {self.plan}: {self.trainable_layers} backbone layers trainable, "
            f"{self.frozen_layers} frozen; {self.trainable_params:,} of "
            f"{self.total_params:,} parameters train"
        )
        if self.batchnorm_frozen:
            text += f"; {self.batchnorm_frozen} BatchNormalization layers kept in inference mode"
        return text


def get(identifier):
    """Returns the checked `FreezePlan` of a freeze-plan identifier.

    The `get` of the spec families (`transferkit.specs`): `parse_plan`,
    which lists the identifiers it takes.

    Example:

    >>> get("last:20") == get({"kind": "last", "value": 20}) == get(20)
    True
    """
    return parse_plan(identifier)


def get_backbone(model, name=BACKBONE):
    """Returns the nested backbone model of `model` (a `build` or `reuse` model)."""
    try:
        backbone = model.get_layer(name)
    except ValueError:
        raise TransferkitError(
            f"Model {model.name!r} has no layer named {name!r}; freeze plans apply to "
            "models made by transferkit.build or transferkit.reuse, or pass backbone=<the "
            "nested model's name>."
        ) from None
    if not isinstance(backbone, keras.Model):
        raise TransferkitError(f"Layer {name!r} of {model.name!r} is not a nested model.")
    return backbone


def freeze(model, unfreeze="none", *, batchnorm="frozen", blocks=None, backbone=BACKBONE):
    """Sets which of the backbone's layers train; the rest of `model` trains.

    Call it before `compile` (Keras reads `trainable` when it compiles). A
    backbone with LoRA adapters (`transferkit.models.lora.enable_lora`) trains
    only its adapters in the part the plan unfreezes.

    Args:
        model: a model whose pretrained part is a nested model named
            `backbone` (what `transferkit.build` and `transferkit.reuse` make).
        unfreeze: the freeze plan: the part of the backbone that trains (see
            the module docstring). Defaults to `"none"`.
        batchnorm: `"frozen"` (default) keeps BatchNormalization layers
            frozen, hence in inference mode; `"train"` lets them follow the
            plan.
        blocks: for `"blocks:N"`: a catalogue name, a `BackboneConfig`, or
            the block names. Defaults to the catalogue name in the model's
            name (`build` names its models `"<backbone>_classifier"`).
        backbone: the nested model's name. Defaults to `"backbone"`.

    Returns:
        A `FreezeSummary`.

    Example:

    >>> model = transferkit.build("resnet50", 5)  # doctest: +SKIP
    >>> print(freeze(model, "blocks:1"))  # doctest: +SKIP
    unfreeze blocks:1: 33 backbone layers trainable, ...
    """
    plan = parse_plan(unfreeze)
    if batchnorm not in BATCHNORM_MODES:
        raise TransferkitError(f"batchnorm must be 'frozen' or 'train', got {batchnorm!r}.")
    trunk = get_backbone(model, backbone)
    for layer in model.layers:
        if layer is not trunk:
            layer.trainable = True

    layers = trunk.layers
    weighted = [i for i, layer in enumerate(layers) if layer.weights]
    start = _first_trainable(plan, layers, weighted, model, blocks)

    trunk.trainable = start < len(layers)
    for i, layer in enumerate(layers):
        layer.trainable = i >= start
    frozen_bn = 0
    if batchnorm == "frozen":
        # Nested layers too: a trainable block may hold its own BatchNormalization.
        for _, layer, _ in iter_layers(trunk):
            if _is_batchnorm(layer) and layer.trainable:
                layer.trainable = False
                frozen_bn += 1

    if lora_layers(trunk):  # LoRA: in the trainable part, only the adapters learn
        freeze_all_but_adapters(trunk)

    train = [layer for layer in layers[start:] if layer.trainable]
    return FreezeSummary(
        plan=str(plan),
        trainable_layers=sum(1 for layer in train if layer.weights),
        frozen_layers=sum(1 for i in weighted if not layers[i].trainable),
        batchnorm_frozen=frozen_bn,
        trainable_params=_count(trunk.trainable_weights),
        total_params=_count(trunk.weights),
    )


def check_plan(backbone, unfreeze, *, blocks=None):
    """Raises the error `freeze` would raise for `unfreeze` on `backbone`; changes nothing.

    Lets a run check its freeze plans against the backbone's layers (e.g.
    a `from:LAYER` name, a `last:N` count) before any data is read.

    Args:
        backbone: the backbone model (the nested model `freeze` acts on).
        unfreeze: the freeze plan.
        blocks: as for `freeze`; needed for `"blocks:N"` only.

    Example:

    >>> check_plan(keras.applications.MobileNetV2(weights=None, include_top=False),
    ...            "from:block_99_expand")  # doctest: +SKIP
    Traceback (most recent call last):
    TransferkitError: Freeze plan from:block_99_expand: the backbone has no layer ...
    """
    plan = parse_plan(unfreeze)
    layers = backbone.layers
    weighted = [i for i, layer in enumerate(layers) if layer.weights]
    _first_trainable(plan, layers, weighted, backbone, blocks)


def _first_trainable(plan, layers, weighted, model, blocks):
    """The index in `layers` from which the backbone trains."""
    if plan.kind == "none":
        return len(layers)
    if plan.kind == "all":
        return 0
    if plan.kind in ("last", "fraction"):
        if plan.kind == "last":
            count = plan.value
        else:
            count = max(1, round(plan.value * len(weighted)))
        if count > len(weighted):
            raise TransferkitError(
                f"Freeze plan {plan}: the backbone has only {len(weighted)} layers with "
                "weights; use 'all' to unfreeze all of them."
            )
        return weighted[-count]
    if plan.kind == "from":
        names = [layer.name for layer in layers]
        if plan.value not in names:
            import difflib

            close = difflib.get_close_matches(plan.value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TransferkitError(
                f"Freeze plan {plan}: the backbone has no layer {plan.value!r}{hint}."
            )
        return names.index(plan.value)
    return _block_start(plan, layers, block_names(blocks, model))


def block_names(blocks, model, *, alternative="use last:N or from:LAYER"):
    """The backbone's block names, first to last, from `blocks` or `model`'s name.

    Args:
        blocks: a catalogue name, a `BackboneConfig`, a list of block-name
            prefixes, or `None`: the catalogue name in the model's name
            (`build` names its models `"<backbone>_classifier"`).
        model: the model the blocks belong to.
        alternative: what to do instead, for the error messages.
    """
    from transferkit.backbones.registry import BackboneConfig, get_backbone_config

    if blocks is None:
        suffix = "_classifier"
        if not model.name.endswith(suffix):
            raise TransferkitError(
                "Block names are needed: pass blocks=<the catalogue name>, e.g. "
                f"blocks='resnet50', or the block name prefixes; or {alternative}."
            )
        blocks = model.name[: -len(suffix)]
    if isinstance(blocks, str):
        blocks = get_backbone_config(blocks)
    if isinstance(blocks, BackboneConfig):
        blocks = blocks.blocks
    if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, str) for b in blocks):
        raise TransferkitError(
            f"blocks must be a catalogue name, a BackboneConfig or a list of block "
            f"name prefixes; got {blocks!r}."
        )
    if not blocks:
        raise TransferkitError(f"This backbone has no named blocks; {alternative}.")
    return tuple(blocks)


def _block_start(plan, layers, blocks):
    import re

    count = plan.value
    if count > len(blocks):
        raise TransferkitError(
            f"Freeze plan {plan}: the backbone has {len(blocks)} blocks "
            f"({blocks[0]} .. {blocks[-1]}); use at most blocks:{len(blocks)}."
        )
    if count == len(blocks):
        return 0
    # The trainable part starts after the last layer of the block before.
    before = re.compile(re.escape(blocks[-count - 1]) + r"(?!_?\d)")
    last = [i for i, layer in enumerate(layers) if before.match(layer.name)]
    if not last:
        raise TransferkitError(
            f"Freeze plan {plan}: no layer of the backbone belongs to block "
            f"{blocks[-count - 1]!r}; use last:N or from:LAYER."
        )
    return last[-1] + 1


def _is_batchnorm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _count(weights):
    import math

    return int(sum(math.prod(w.shape) for w in weights))
