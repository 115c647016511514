"""The regularization pitfall of seed 000, shown on a `keras.applications` model."""

import os
import tempfile

import keras
import numpy as np

from transferkit.regularizers.audits import audit
from transferkit.regularizers.regularization import regularize
from transferkit.evaluation.inference import load_model
from transferkit.saving import save_model


def regularization_demo(input_size=96, strength=1e-4, seed=0, echo=print):
    """Shows why `layer.kernel_regularizer = ...` fails and what works instead.

    On MobileNetV2 (random weights standing in for ImageNet ones, so that it
    runs offline): the naive attribute adds no penalty; rebuilding from the
    config adds it but loses the weights; `transferkit.regularize` adds it and
    keeps every weight, and the audit checks it against `model.losses`.

    Args:
        input_size: image side in pixels. Defaults to `96`.
        strength: the L2 strength. Defaults to `1e-4`.
        seed: seed of the random weights and inputs. Defaults to `0`.
        echo: where each line of the story goes. Defaults to `print`.

    Returns:
        A dict of the figures the story prints.

    Example:

    >>> results = regularization_demo(echo=lambda line: None)  # doctest: +SKIP
    >>> results["naive_penalties"], results["weights_kept"]  # doctest: +SKIP
    (0, True)
    """
    keras.utils.set_random_seed(seed)
    shape = (input_size, input_size, 3)

    def pretrained():
        # Same seed, same weights: each step starts from one "pretrained" model.
        keras.utils.set_random_seed(seed)
        return keras.applications.MobileNetV2(weights=None, input_shape=shape)

    penalty = keras.regularizers.L2(strength)
    results = {}

    model = pretrained()
    reference = [np.array(v) for v in model.weights]
    echo(f"MobileNetV2 at {input_size} px: {len(model.weights)} weight arrays, "
         f"{model.count_params():,} parameters.")

    echo("\n1. The naive way: set `layer.kernel_regularizer` on each layer.")
    for layer in model.layers:
        if hasattr(layer, "kernel_regularizer"):
            layer.kernel_regularizer = penalty
    results["naive_penalties"] = len(model.losses)
    echo(f"   The config says l2, but model.losses has {len(model.losses)} terms: "
         "no penalty reaches the loss.")

    echo("\n2. The rebuild hack without reloading weights: from_config.")
    rebuilt = keras.Model.from_config(model.get_config())
    changed = _max_change(reference, rebuilt.weights)
    results["rebuild_penalties"] = len(rebuilt.losses)
    results["rebuild_max_weight_change"] = changed
    echo(f"   model.losses now has {len(rebuilt.losses)} terms, but the weights "
         f"moved by up to {changed:.3g}: the pretrained weights are gone.")

    echo("\n3. transferkit.regularize, in place.")
    model = pretrained()
    report = regularize(model, kernel=penalty)
    report.verify(model)
    kept = _max_change(reference, model.weights) == 0.0
    measured = float(sum(np.asarray(t) for t in model.losses))
    results.update(
        penalties=len(model.losses),
        weights_kept=kept,
        penalty_total=measured,
        audit_total=report.total,
    )
    echo(report.to_table(max_rows=6))
    echo(f"   model.losses has {len(model.losses)} terms summing to {measured:.6g}; "
         f"the audit, checked with NumPy, gives {report.total:.6g}; every weight "
         f"{'identical' if kept else 'CHANGED'}.")

    echo("\n4. Save and load: the penalties travel with the .keras file.")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "regularized.keras")
        save_model(model, path)
        loaded = load_model(path)
    reloaded = audit(loaded).verify(loaded)
    results["reloaded_total"] = reloaded.total
    echo(f"   The reloaded model carries {len(reloaded)} penalties, total "
         f"{reloaded.total:.6g}, verified against its model.losses.")

    echo("\n5. Frozen layers: Keras counts penalties of trainable weights only.")
    model.trainable = False
    frozen_terms = len(model.losses)
    model.trainable = True
    results["frozen_penalties"] = frozen_terms
    echo(f"   With the model frozen, model.losses has {frozen_terms} terms; "
         "transferkit's audit marks such penalties inactive until unfrozen.")
    return results


def _max_change(reference, variables):
    return max(
        float(np.max(np.abs(r - np.asarray(v)))) if r.size else 0.0
        for r, v in zip(reference, variables)
    )
