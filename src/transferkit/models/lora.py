"""LoRA: low-rank adapters on a pretrained network's projections, all else frozen.

LoRA (Hu et al., 2021) fine-tunes a large network by learning, for chosen
`Dense`/`EinsumDense` layers, a low-rank update `W + (alpha / r) A B` of
each kernel `W` (frozen), with `A` of shape `(in, r)` and `B` of shape
`(r, out)`, `B` zero at the start: the model starts exactly as it was, and
trains a small fraction of its weights (MiniLM-L6 with rank 8 on its
attention's query and value projections: 445,440 of 22.6 M; Keras adapts an
`EinsumDense` kernel `(384, 12, 32)` by `A (384, 12, 8)` and `B (8, 32)`). Keras' own
`enable_lora` does the arithmetic; this module finds the layers, nested
ones included (KerasHub's attention projections live inside its transformer
layers), by the pattern of their qualified names.

Keras writes the merged kernel `W + (alpha / r) A B` when a model is saved
(`model.save`, `save_weights`): a saved `.keras` file is the merged model,
the export needs no step of its own, and predictions are those of the
trained model. `merge_lora` does the same in memory. `transferkit.freeze` keeps every weight of the backbone but
the adapters frozen, whatever the plan.
"""

import re

import keras

from transferkit._walk import iter_layers
from transferkit.errors import TransferkitError

# The LoRA paper's choice for a transformer: the attention's query and value
# projections (KerasHub's names in BERT-like encoders).
DEFAULT_TARGETS = r"self_attention_layer/(query|value)$"
_ADAPTABLE = (keras.layers.Dense, keras.layers.EinsumDense)


def enable_lora(model, rank, *, targets=None, alpha=None):
    """Adds rank-`rank` LoRA adapters to the layers of `model` that `targets` selects.

    Args:
        model: a built Keras model, e.g. `transferkit.build("minilm_l6", 2)`.
        rank: int >= 1, the rank `r` of each update.
        targets: a regular expression searched in each layer's qualified
            name (`"backbone/transformer_layer_0/self_attention_layer/query"`),
            or a list of them; only `Dense` and `EinsumDense` layers are
            adapted. Defaults to `DEFAULT_TARGETS`: the attention's query
            and value projections.
        alpha: the update's scale numerator (`alpha / rank`). Defaults to
            `rank` (a scale of 1), as Keras does.

    Returns:
        The qualified names of the adapted layers.

    Raises:
        TransferkitError: a bad rank or pattern, no layer selected, or a
            selected layer that already has adapters.

    Example:

    >>> model = transferkit.build("minilm_l6", 2, weights=None)  # doctest: +SKIP
    >>> len(enable_lora(model, 8))  # doctest: +SKIP
    12
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise TransferkitError(f"LoRA rank must be an int >= 1, like 8; got {rank!r}.")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                              or alpha <= 0):
        raise TransferkitError(f"LoRA alpha must be a number > 0 or None; got {alpha!r}.")
    patterns = [targets or DEFAULT_TARGETS] if isinstance(targets, str) or targets is None \
        else list(targets)
    try:
        compiled = [re.compile(p) for p in patterns]
    except (re.error, TypeError) as error:
        raise TransferkitError(f"Invalid LoRA targets {targets!r}: {error}.") from None
    chosen = [(name, layer) for name, layer, _ in iter_layers(model)
              if isinstance(layer, _ADAPTABLE) and any(p.search(name) for p in compiled)]
    if not chosen:
        dense = [name for name, layer, _ in iter_layers(model) if isinstance(layer, _ADAPTABLE)]
        raise TransferkitError(
            f"LoRA targets {patterns} select no Dense or EinsumDense layer; the model has "
            f"{len(dense)}, such as {', '.join(dense[:3]) or 'none'}.")
    for name, layer in chosen:
        if layer.lora_enabled:
            raise TransferkitError(f"{name} already has LoRA adapters (rank "
                                   f"{layer.lora_rank}); enable them once.")
        if not layer.built:
            raise TransferkitError(f"{name} is not built; build the model first.")
    for name, layer in chosen:
        layer.enable_lora(rank, lora_alpha=alpha)
        if layer.bias is not None:  # the adapters alone learn
            layer.bias.trainable = False
    return [name for name, _ in chosen]


def merge_lora(model):
    """Folds each LoRA update into its kernel, in place; the adapters start again.

    Each adapted layer's kernel becomes `W + (alpha / r) A B` and its `B`
    zero: the model computes what it computed, its kernels hold the
    fine-tuning, and the adapters are ready for another round (from `B = 0`,
    the LoRA start). What a saved `.keras` file holds anyway: Keras merges on
    save.

    Returns:
        The qualified names of the merged layers.

    Example:

    >>> merged = merge_lora(model)  # doctest: +SKIP
    """
    merged = []
    for name, layer in lora_layers(model):
        update = layer.kernel  # Keras' merged value while LoRA is on
        kernel = next(v for v in layer.weights if v.path.endswith("/kernel"))
        kernel.assign(keras.ops.convert_to_numpy(update))
        layer.lora_kernel_b.assign(keras.ops.zeros(layer.lora_kernel_b.shape))
        merged.append(name)
    return merged


def lora_layers(model):
    """`[(qualified name, layer)]`: the layers of `model` that have LoRA adapters.

    Example:

    >>> [name for name, _ in lora_layers(model)][:1]  # doctest: +SKIP
    ['backbone/transformer_layer_0/self_attention_layer/query']
    """
    return [(name, layer) for name, layer, _ in iter_layers(model)
            if getattr(layer, "lora_enabled", False)]


def freeze_all_but_adapters(model):
    """Freezes every weight of `model` but the LoRA adapters (in its trainable part).

    Each layer without adapters and without nested layers (a leaf:
    `LayerNormalization`, an embedding, a plain projection) is made
    non-trainable; the adapted layers keep their trainability, their kernel
    and bias frozen by `enable_lora`. Returns the number of layers frozen.
    """
    found = list(iter_layers(model))
    names = [name for name, _, _ in found]
    frozen = 0
    for name, layer, _ in found:
        leaf = not any(other.startswith(name + "/") for other in names)
        if leaf and layer.weights and not getattr(layer, "lora_enabled", False) \
                and layer.trainable:
            layer.trainable = False
            frozen += 1
    return frozen
