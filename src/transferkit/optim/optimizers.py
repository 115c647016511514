"""Optimizers by name, and per-variable (discriminative) learning rates.

An optimizer spec names a Keras optimizer and its parameters; the string form
is the command line's:

    "sgd"                                   keras.optimizers.SGD()
    "sgd:momentum=0.9,nesterov=true"        SGD with Nesterov momentum
    "adamw:weight_decay=1e-4"               AdamW
    {"name": "adam", "beta_1": 0.9}         (Python, config.json)

Names: sgd (momentum, nesterov), adagrad, rmsprop (rho, momentum), adam
(beta_1, beta_2, epsilon, amsgrad), nadam, adamw (weight_decay); every
parameter of the Keras class is accepted (clipnorm, use_ema, ...). Values
are numbers, `true`/`false`, `none`, or lists separated by `;`: the strings
are transferkit's one spec grammar (`transferkit.specs`), keyword settings only,
read and checked without Keras by `transferkit.optim.optimizer_specs`.

Discriminative fine-tuning trains the layers of a pretrained network at
different rates: the new head at the full learning rate, the last blocks of
the backbone slower, the first blocks slowest. Keras optimizers have one
learning rate; `discriminative` returns one whose update of each variable
uses `learning_rate * multiplier(variable)`, and `block_multipliers` gives
the multipliers of the usual recipe for a `transferkit.build` model.
"""

import math
import numbers
import re
import warnings

import keras
import numpy as np
from keras import ops

# Registers transferkit's Keras schedules (PowerDecay, OneCycle), which a
# learning rate given as a dict (what `describe` records) may name.
import transferkit.optim.lr_schedules  # noqa: F401
from transferkit import specs
from transferkit._compat import (
    apply_weight_decay,
    learning_rate_schedule,
    public_optimizer_class,
)
from transferkit.errors import TransferkitError
from transferkit.optim.optimizer_specs import (
    COMMON,
    KERAS_OPTIMIZERS,
    parameters,
    parse_optimizer,
    parse_spec,  # noqa: F401  (public here before the specs moved out)
)

# name -> the Keras optimizer class
OPTIMIZERS = {name: getattr(keras.optimizers, cls) for name, (cls, _) in KERAS_OPTIMIZERS.items()}


def get(identifier):
    """Returns a Keras optimizer for an optimizer identifier, or `None` for `None`.

    Args:
        identifier: one of

            - `None`, returned as it is;
            - a `keras.optimizers.Optimizer`, returned as it is;
            - a spec string, `"adam"` or `"sgd:momentum=0.9,nesterov=true"`
              (see `get_optimizer` for the names);
            - a dict: what `describe` returns
              (`{"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}`), or
              `keras.optimizers.serialize(optimizer)`. (A bare `get_config()`
              will not do: its `name` is the instance's, such as `adam_w_1`.)

    Returns:
        A `keras.optimizers.Optimizer` (new, unbuilt, unless one was given),
        or `None`.

    Example:

    >>> get({"name": "sgd", "momentum": 0.9}).momentum
    0.9
    >>> get(None) is None
    True
    """
    if identifier is None:
        return None
    return get_optimizer(identifier)


def get_optimizer(name, learning_rate=None, multipliers=None, **params):
    """Returns a Keras optimizer from a name or spec, with its parameters.

    Args:
        name: `"sgd"`, `"adagrad"`, `"rmsprop"`, `"adam"`, `"nadam"` or
            `"adamw"`, optionally with parameters as in
            `"sgd:momentum=0.9,nesterov=true"`; a dict as `describe` or
            `keras.optimizers.serialize` returns; or a Keras optimizer
            (returned as it is).
        learning_rate: a float, a `keras.optimizers.schedules.LearningRateSchedule`,
            or a schedule serialized by Keras (a dict, as `describe` records
            it). Defaults to `None`: the Keras class's default rate.
        multipliers: optional per-variable learning-rate multipliers (see
            `discriminative`). Defaults to `None` (one rate for all).
        **params: the optimizer's parameters, e.g. `momentum=0.9`; any
            argument of the Keras class except `name` and `learning_rate`.

    Returns:
        A new, unbuilt `keras.optimizers.Optimizer`.

    Example:

    >>> optimizer = get_optimizer("sgd:momentum=0.9,nesterov=true", learning_rate=0.01)
    >>> type(optimizer).__name__, optimizer.momentum, optimizer.nesterov
    ('SGD', 0.9, True)
    >>> get_optimizer("adamw", 1e-3, weight_decay=1e-4).weight_decay
    0.0001
    """
    if isinstance(name, dict) and "class_name" in name:
        name = _deserialized(name)
    if isinstance(name, keras.optimizers.Optimizer):
        if learning_rate is not None or params:
            raise TransferkitError(
                "Give parameters with an optimizer name such as 'sgd', not with an "
                f"optimizer object ({type(name).__name__})."
            )
        return name if multipliers is None else discriminative(name, multipliers)
    spec = parse_optimizer(name, learning_rate, multipliers, **params)
    params = dict(spec.params)
    if spec.learning_rate is not None:
        params["learning_rate"] = _checked_learning_rate(spec.learning_rate)
    try:
        # Keras checks the values it constrains (SGD's momentum in [0, 1], ...).
        optimizer = OPTIMIZERS[spec.name](**params)
    except (TypeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        given = name.get("name") if isinstance(name, dict) else name
        raise TransferkitError(f"Invalid optimizer {given!r}: {reason}") from None
    if spec.multipliers is None:
        return optimizer
    return discriminative(optimizer, spec.multipliers)


def _deserialized(config):
    return specs.deserialized(config, keras.optimizers.deserialize, keras.optimizers.Optimizer,
                              "optimizer", f"give one of {', '.join(OPTIMIZERS)} by name")


def describe(optimizer):
    """An optimizer (or spec) as a JSON-able dict that `get_optimizer` takes back.

    The dict holds `name`, `learning_rate` (a float, or the schedule as
    Keras serializes it), the algorithm's parameters, the general ones
    (clipping, EMA, ...) that differ from their defaults, and `multipliers`
    for a `discriminative` optimizer. `get_optimizer(**describe(x))` makes an
    optimizer configured like `x`.

    Example:

    >>> describe("sgd:momentum=0.9")
    {'name': 'sgd', 'learning_rate': 0.01, 'momentum': 0.9, 'nesterov': False}
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = get_optimizer(optimizer)
    cls = public_optimizer_class(optimizer)
    names = [key for key, value in OPTIMIZERS.items() if value is cls]
    if not names:
        raise TransferkitError(
            f"Cannot describe a {cls.__name__} optimizer; describe knows "
            f"{', '.join(OPTIMIZERS)}."
        )
    config = optimizer.get_config()
    described = {"name": names[0], "learning_rate": _json_value(config["learning_rate"])}
    # The algorithm's arguments always, the general ones (clipping, EMA, ...)
    # where they differ from their defaults.
    for param in parameters(names[0]):
        if param in config and (param not in COMMON or config[param] != COMMON[param]):
            described[param] = _json_value(config[param])
    if isinstance(optimizer, _MultipliedLearningRates):
        described["multipliers"] = config["multipliers"]
    return described


def _checked_learning_rate(learning_rate):
    if isinstance(learning_rate, dict):
        try:
            return keras.optimizers.schedules.deserialize(learning_rate)
        except (TypeError, ValueError) as e:
            raise TransferkitError(
                f"Invalid learning-rate schedule {learning_rate!r}: {e}") from None
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
            or not math.isfinite(learning_rate) or learning_rate <= 0):
        raise TransferkitError(
            f"A learning rate must be a positive number or a Keras LearningRateSchedule, "
            f"got {learning_rate!r}."
        )
    return float(learning_rate)


def _json_value(value):
    """Plain Python numbers for config files, float32 values in their shortest form."""
    if isinstance(value, keras.Variable):  # a momentum being cycled
        value = float(value)
    if isinstance(value, float):
        # Keras keeps the learning rate in a float32 variable: 0.01 comes back
        # as 0.009999999776482582, which is the same float32 as 0.01.
        return float(str(np.float32(value)))
    return value


# --- Discriminative learning rates ------------------------------------------

def discriminative(optimizer, multipliers):
    """An optimizer whose learning rate is scaled per variable.

    The result is a new, unbuilt optimizer of a subclass of `optimizer`'s class
    (`DiscriminativeSGD` for `SGD`, ...) with the same configuration. Its
    update of each variable is its class's own update rule at
    `learning_rate * multiplier`, whether the learning rate is a float or a
    schedule; decoupled weight decay (`weight_decay`, as in AdamW) is scaled
    alike. With plain SGD a variable with multiplier `m` moves by exactly
    `-m * learning_rate * gradient`.

    The multipliers are read from each variable's `path` (its layer's name,
    then the weight's: `"conv5_block1_1_conv/kernel"`, `"head/bias"`; a
    `Sequential` model puts its own name first) when the optimizer is built.
    Saved with a model, the optimizer keeps its multipliers: import
    `transferkit.optim.optimizers` before `keras.saving.load_model` (the classes
    are registered there). Under PyTorch the update is Keras' generic one,
    not the fused `torch._foreach` version of the plain optimizer.

    Args:
        optimizer: a Keras optimizer (not yet built) or a spec for
            `get_optimizer`.
        multipliers: a dict `{pattern: multiplier}`, where each pattern is a
            regular expression searched in the variable paths (as
            `regularize(layers=...)` searches layer names: `"head/"` or
            `"conv5_"` will do) and the first pattern that matches wins; or a
            function `variable -> multiplier`. Variables that no pattern
            matches keep the full rate (multiplier 1); an empty pattern `""`
            last sets another default. Multipliers are finite numbers >= 0.

    Returns:
        A new `keras.optimizers.Optimizer`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> optimizer = discriminative("sgd:momentum=0.9", {"body/": 0.1})
    >>> type(optimizer).__name__
    'DiscriminativeSGD'
    >>> model.compile(optimizer, "mse")
    >>> optimizer.build(model.trainable_variables)
    >>> [optimizer.learning_rate_multiplier(v) for v in model.trainable_variables]
    [0.1, 0.1, 1.0, 1.0]
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = get_optimizer(optimizer)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise TransferkitError(
            "Give discriminative the inner optimizer, then wrap the result in "
            "LossScaleOptimizer."
        )
    if optimizer.built:
        raise TransferkitError(
            f"Optimizer {optimizer.name!r} is already built (it has trained); give "
            "discriminative a new optimizer or a spec such as 'sgd:momentum=0.9'."
        )
    _check_multipliers(multipliers)
    cls = discriminative_class(public_optimizer_class(optimizer))
    config = optimizer.get_config()
    config["multipliers"] = multipliers
    if isinstance(config["learning_rate"], dict):
        # The schedule itself, not a copy rebuilt from its config, which an
        # unregistered class cannot be.
        config["learning_rate"] = learning_rate_schedule(optimizer)
    return cls(**config)


def _check_multipliers(multipliers):
    if callable(multipliers):
        return
    if not isinstance(multipliers, dict):
        raise TransferkitError(
            "multipliers must be a dict {variable-path pattern: multiplier}, such as "
            f"{{'head/': 1.0, 'conv5_': 0.5}}, or a function of the variable; got {multipliers!r}."
        )
    for pattern, multiplier in multipliers.items():
        if not isinstance(pattern, str):
            raise TransferkitError(f"A multiplier pattern must be a string, got {pattern!r}.")
        try:
            re.compile(pattern)
        except re.error as e:
            raise TransferkitError(
                f"Invalid multiplier pattern {pattern!r}: {e}; patterns are regular expressions."
            ) from None
        _check_multiplier(multiplier, pattern)


def _check_multiplier(multiplier, where):
    if (isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Real)
            or not math.isfinite(multiplier) or multiplier < 0):
        raise TransferkitError(
            f"Learning-rate multiplier for {where!r} must be a finite number >= 0, "
            f"got {multiplier!r}."
        )
    return float(multiplier)


class _MultipliedLearningRates:
    """Mixin: scales the learning rate of each variable's update by a multiplier.

    Put before a Keras optimizer class in the bases. `update_step` is the one
    per-variable hook that every backend calls (TensorFlow passes the
    underlying `tf.Variable`, hence the look-up by variable index rather
    than by path; PyTorch's fused optimizers skip it, but Keras builds them
    only for its own classes, not for subclasses).
    """

    _base_optimizer = None  # set on each generated class

    def __init__(self, *args, multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        if multipliers is None:
            multipliers = {}
        _check_multipliers(multipliers)
        # A tuple of pairs, which the variable trackers leave as it is.
        self._multiplier_rule = (
            multipliers if callable(multipliers)
            else tuple((pattern, float(m)) for pattern, m in multipliers.items())
        )
        self._multipliers = ()

    def build(self, variables):
        super().build(variables)
        self._multipliers = tuple(self._resolve(variable) for variable in variables)

    def _resolve(self, variable):
        rule = self._multiplier_rule
        path = getattr(variable, "path", variable.name)
        if callable(rule):
            return _check_multiplier(rule(variable), path)
        for pattern, multiplier in rule:
            if re.search(pattern, path):
                return multiplier
        return 1.0

    def learning_rate_multiplier(self, variable):
        """The multiplier of a variable the optimizer was built with."""
        if not self.built:
            raise TransferkitError(
                f"Optimizer {self.name!r} is not built yet: call "
                "optimizer.build(model.trainable_variables) first."
            )
        return self._multipliers[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.learning_rate_multiplier(variable)
        if multiplier != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), multiplier)
        super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):  # Keras' hook: _compat.WEIGHT_DECAY_HOOK
        # Keras decays by `weight_decay * learning_rate` with the optimizer's
        # one rate; decaying each group at its own rate means scaling the
        # (Python float) weight decay while the backend's method runs.
        if self.weight_decay is None:
            return
        groups = {}
        for variable in variables:
            groups.setdefault(self.learning_rate_multiplier(variable), []).append(variable)
        weight_decay = self.weight_decay
        try:
            for multiplier, group in groups.items():
                self.weight_decay = weight_decay * multiplier
                apply_weight_decay(super(), group)
        finally:
            self.weight_decay = weight_decay

    def get_config(self):
        config = super().get_config()
        rule = self._multiplier_rule
        if callable(rule):
            if self.built:
                # A function cannot be saved; its resolved values can.
                rule = {_exact(v.path): m
                        for v, m in zip(self._trainable_variables, self._multipliers)
                        if hasattr(v, "path")}
            else:
                warnings.warn(
                    "A discriminative optimizer with a multiplier function is saved "
                    "before it is built: its multipliers are not saved.",
                    stacklevel=2,
                )
                rule = {}
        config["multipliers"] = dict(rule)
        return config


_CLASSES = {}


def discriminative_class(base):
    """The registered `Discriminative<Base>` subclass of an optimizer class."""
    if base not in _CLASSES:
        name = f"Discriminative{base.__name__}"
        cls = type(name, (_MultipliedLearningRates, base), {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"`{base.__name__}` with per-variable learning-rate multipliers "
                       "(see `transferkit.optim.optimizers.discriminative`).",
            "_base_optimizer": base,
        })
        _CLASSES[base] = keras.saving.register_keras_serializable(
            package="transferkit", name=name)(cls)
    return _CLASSES[base]


# Registered at import, so that a saved model reloads with them.
for _cls in OPTIMIZERS.values():
    discriminative_class(_cls)


def block_multipliers(model, ratio=0.5, blocks=None, backbone="backbone"):
    """Multipliers that slow the backbone block by block, for `discriminative`.

    The layers after the backbone (the head) keep the full rate (1); the last
    block of the backbone gets `ratio`, the one before it `ratio**2`, and so
    on down to the first block, `ratio**n`. A block runs, as for the freeze
    plan `"blocks:N"`, from the end of the block before it to its own last
    layer, so the layers before the first block (the stem) go with it, at the
    smallest rate, and the layers after the last one (e.g. a final
    convolution) with the last block.

    Args:
        model: a model made by `transferkit.build` or `transferkit.reuse`
            (input, then a nested model named `backbone`, then pooling,
            dropout and the head).
        ratio: the factor from one block to the one before, in (0, 1].
            Defaults to `0.5`.
        blocks: a catalogue name, a `BackboneConfig`, or the block names,
            first to last. Defaults to the catalogue name in the model's name.
        backbone: the nested model's name. Defaults to `"backbone"`.

    Returns:
        A dict `{pattern: multiplier}` over the model's variable paths,
        head last, for `discriminative` or `get_optimizer(multipliers=...)`.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(2, 3, name="stem")(inputs)
    >>> x = keras.layers.Conv2D(2, 3, name="block1_conv")(x)
    >>> x = keras.layers.Conv2D(2, 3, name="block2_conv")(x)
    >>> trunk = keras.Model(inputs, x, name="backbone")
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.GlobalAveragePooling2D()(trunk(inputs))
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    >>> block_multipliers(model, 0.5, blocks=("block1", "block2"))
    {'stem/': 0.25, 'block1_conv/': 0.25, 'block2_conv/': 0.5, 'head/': 1.0}
    """
    from transferkit.models.freezing import block_names, get_backbone

    if (isinstance(ratio, bool) or not isinstance(ratio, numbers.Real)
            or not 0 < ratio <= 1):
        raise TransferkitError(
            f"The per-block learning-rate ratio must be a number in (0, 1], such as 0.5; "
            f"got {ratio!r}."
        )
    trunk = get_backbone(model, backbone)
    names = block_names(blocks, model)
    layers = trunk.layers
    ends = []
    for block in names:
        member = re.compile(re.escape(block) + r"(?!_?\d)")
        found = [i for i, layer in enumerate(layers) if member.match(layer.name)]
        if not found:
            raise TransferkitError(
                f"No layer of the backbone belongs to block {block!r}; check the block "
                f"names ({names[0]} .. {names[-1]}) against the backbone's layers."
            )
        ends.append(found[-1])

    groups = []  # (layer, multiplier) for every layer holding weights
    for layer in model.layers:
        if layer is not trunk:
            groups.append((layer, 1.0))
            continue
        for index, inner in enumerate(layers):
            block = next((b for b, end in enumerate(ends) if index <= end), len(ends) - 1)
            groups.append((inner, float(ratio) ** (len(ends) - block)))
    groups = [(layer, multiplier) for layer, multiplier in groups if layer.weights]
    # The head goes last, after the backbone, which `model.layers` already does.
    return _patterns(groups, model)


def _exact(path):
    return "^" + re.escape(path) + "$"


def _patterns(groups, model):
    """One pattern per layer (`"name/"`) when that is unambiguous, else one per variable."""
    wanted = {id(v): m for layer, m in groups for v in layer.weights}
    by_layer = {}
    for layer, multiplier in groups:
        pattern = re.escape(layer.name + "/")
        if all(re.search(pattern, v.path) for v in layer.weights):
            by_layer[pattern] = multiplier
    if len(by_layer) == len(groups) and _resolves(by_layer, model.weights, wanted):
        return by_layer
    exact = {}
    for layer, multiplier in groups:
        for variable in layer.weights:
            pattern = _exact(variable.path)
            if exact.setdefault(pattern, multiplier) != multiplier:
                raise TransferkitError(
                    f"Two weights of {model.name!r} share the path {variable.path!r} but "
                    "belong to different blocks; give their layers distinct names."
                )
    return exact


def _resolves(patterns, variables, wanted):
    for variable in variables:
        got = next((m for p, m in patterns.items() if re.search(p, variable.path)), 1.0)
        if got != wanted.get(id(variable), 1.0):
            return False
    return True
