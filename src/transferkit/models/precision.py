"""Mixed precision: the backbone computes in 16 bits, the head and the loss in float32.

`precision="mixed"` builds the backbone under Keras' `mixed_float16` policy
where an accelerator computes (a GPU) and `mixed_bfloat16` on a CPU:
variables stay float32, each layer casts them to 16 bits for its
computation. The global pooling, dropout and classifier head keep float32:
a softmax in float16 loses probability mass in its small outputs (the known
pitfall), and the loss then reads float32 outputs. Penalties
(`transferkit.regularize`) are computed from the float32 variables.

The policy is set only while the model is built and restored afterwards;
each layer keeps the policy it was made with, and a saved `.keras` file
reloads with it. Nothing here imports Keras until it is called, so that the
configuration can check `precision` before Keras is loaded.
"""

import contextlib

from transferkit.errors import TransferkitError

PRECISIONS = ("float32", "mixed")


def policy_name(precision):
    """The Keras dtype policy for `precision`: `None` (the current one), `"float32"`, `"mixed"`.

    `"mixed"` is `"mixed_float16"` when Keras sees a GPU or TPU and
    `"mixed_bfloat16"` on a CPU (float16 has no fast path on CPUs, and
    bfloat16 keeps float32's range, so no loss scaling is needed).

    Example:

    >>> policy_name("float32")
    'float32'
    """
    import keras

    if precision is None:
        return keras.config.dtype_policy().name
    if precision not in PRECISIONS:
        raise TransferkitError(
            f"precision must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}.")
    if precision == "float32":
        return "float32"
    accelerated = any(not device.lower().startswith("cpu")
                      for device in keras.distribution.list_devices())
    return "mixed_float16" if accelerated else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(name):
    """Makes `name` Keras' global dtype policy inside the `with` block only.

    Example:

    >>> with dtype_policy("mixed_bfloat16"):
    ...     layer = keras.layers.Dense(2)
    >>> layer.compute_dtype, layer.variable_dtype, keras.config.dtype_policy().name
    ('bfloat16', 'float32', 'float32')
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def is_mixed(name):
    """Whether the policy `name` computes in another dtype than its variables'."""
    import keras

    policy = keras.dtype_policies.get(name)
    return policy.compute_dtype != policy.variable_dtype


def compute_dtypes(model):
    """The sorted compute dtypes of the layers inside `model`, nested models' included.

    Input layers and the models that hold layers are not counted: they
    compute nothing (and a reloaded model's containers come back float32).

    Example:

    >>> compute_dtypes(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    ['float32']
    """
    import keras

    from transferkit._walk import iter_layers

    return sorted({layer.compute_dtype for _, layer, _ in iter_layers(model)
                   if not isinstance(layer, (keras.layers.InputLayer, keras.Model))})
