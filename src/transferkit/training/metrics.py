"""Per-epoch metrics beyond accuracy, for monitoring skewed classes.

`MacroF1` is Keras' `F1Score` (macro average, the highest score's class as the
prediction) for models trained on class indices: Keras' own takes one-hot
targets. A one-unit sigmoid output counts as the two classes `1 - p, p`.
One-hot targets (`FineTuner(mixing=...)`) are taken as they are, so the score
is the same; soft (mixed) ones count each class by its share.
`FineTuner(monitor="val_macro_f1")` adds it to the compiled metrics, so that
early stopping and the best epoch follow it.

Example:

>>> import numpy as np
>>> metric = MacroF1()
>>> metric.update_state(np.array([0, 0, 1]), np.array([[.9, .1], [.2, .8], [.3, .7]]))
>>> round(float(metric.result()), 4)
0.6667
"""

import keras

@keras.saving.register_keras_serializable(package="transferkit")
class MacroF1(keras.metrics.F1Score):
    """The mean over classes of each class's F1, from class indices and class scores.

    Args:
        name: the metric's name. Defaults to `"macro_f1"` (logged as
            `macro_f1` and `val_macro_f1`).
        dtype: the result's dtype.
    """

    def __init__(self, name="macro_f1", dtype=None):
        super().__init__(average="macro", threshold=None, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = keras.ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] == 1:  # a binary head's P(class 1)
            y_pred = keras.ops.concatenate([1 - y_pred, y_pred], axis=-1)
        if len(y_true.shape) == 2 and y_true.shape[-1] == y_pred.shape[-1] > 1:
            one_hot = keras.ops.cast(y_true, y_pred.dtype)  # one-hot or mixed already
        else:
            labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
            one_hot = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return super().update_state(one_hot, y_pred, sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def metric_for(monitor):
    """The metric to compile for `monitor` (`"val_macro_f1"` or `"macro_f1"`), else `None`."""
    return MacroF1() if monitor.removeprefix("val_") == "macro_f1" else None
