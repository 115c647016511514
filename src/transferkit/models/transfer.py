"""Reusing the user's own trained model as the backbone of a new task (seed 003)."""

import keras

from transferkit.backbones.loading import cut_model, load_backbone
from transferkit.errors import TransferkitError


def reuse(source, num_classes, *, cut_at=None, output="softmax", from_scratch=False,
          dropout=0.0, pooling="avg", name=None, head=None):
    """Builds model B from model A: A's layers up to its output, a new head.

    A's layers are cloned, so training B never changes A (seed 003's
    pitfall: `Sequential(model_A.layers[:-1])` shares the layers, and
    training B would change A too). With `from_scratch=True` the clone keeps
    A's architecture but not its weights: the baseline that shows what the
    transfer bought.

    Args:
        source: model A, a `keras.Model` or the path of a `.keras` file.
        num_classes: the number of classes of the new task.
        cut_at: the layer whose output feeds the new head. Defaults to the
            layer before A's output layer.
        output: `"softmax"`, `"binary"`, `"sigmoid"` or `"linear"` (see
            `transferkit.build`). Defaults to `"softmax"`.
        from_scratch: bool, random initialization instead of A's weights.
            Defaults to `False`.
        dropout: dropout rate before the head. Defaults to `0.0`.
        pooling: `"avg"` or `"max"`, used if the cut output is a feature map.
        name: the model's name. Defaults to `"<A's name>_reused"` (or
            `"_scratch"`).
        head: the former name of `output` (deprecated).

    Returns:
        A functional `keras.Model` whose nested `"backbone"` is the clone.

    Example:

    >>> model_b = reuse(model_a, 2, output="binary")  # doctest: +SKIP
    >>> FineTuner(default_recipe(epochs=(4, 16))).fit(model_b, x, y)  # doctest: +SKIP
    """
    from transferkit.models.model import build, output_argument

    output, _ = output_argument(output, head, "reuse")

    if isinstance(source, keras.Model):
        model = source
    else:
        model = load_backbone(source)
    if not model.built or not getattr(model, "inputs", None):
        raise TransferkitError(
            f"Model {model.name!r} has no defined input; build it on an input shape "
            "(call it on data or give the first layer an Input) before reusing it."
        )
    if cut_at is None:
        if len(model.layers) < 2:
            raise TransferkitError(f"Model {model.name!r} has a single layer; nothing to reuse.")
        cut_at = model.layers[-2].name
    trunk = cut_model(model, cut_at)
    clone = keras.models.clone_model(trunk)
    if not from_scratch:
        clone.set_weights(trunk.get_weights())
    suffix = "scratch" if from_scratch else "reused"
    return build(clone, num_classes, output=output, dropout=dropout, pooling=pooling,
                 name=name or f"{model.name}_{suffix}")
