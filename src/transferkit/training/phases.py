"""Phases of fine-tuning, and the default two-phase recipe (seeds 001 and 003).

The default recipe trains the head on a frozen backbone, then unfreezes the
backbone (per a freeze plan) and recompiles with a learning rate ten times
smaller, so the large gradients of a random head do not wreck the
pretrained features.

A `Phase` checks its settings without Keras (so that a configuration's
mistakes are found in a moment); `build_optimizer` and `to_dict` import it.
"""

import dataclasses
import math
import numbers

from transferkit import specs
from transferkit.errors import TransferkitError
from transferkit.models.plans import parse_plan
from transferkit.optim import optimizer_specs, schedules

OPTIMIZERS = optimizer_specs.NAMES


@dataclasses.dataclass
class Phase:
    """One phase of fine-tuning.

    Attributes:
        epochs: the most epochs this phase runs (early stopping may end it
            sooner).
        learning_rate: the optimizer's learning rate.
        unfreeze: the freeze plan for the backbone (`"none"`, `"all"`,
            `"last:N"`, `"fraction:F"`, `"from:LAYER"`, `"blocks:N"`; see
            `transferkit.models.freezing`).
        optimizer: an optimizer name or spec with its parameters (`"adam"`,
            `"sgd:momentum=0.9,nesterov=true"`, `"adamw:weight_decay=1e-4"`;
            see `transferkit.optim.optimizers.get_optimizer`), or a Keras
            optimizer. A spec's name, parameter names and value types are
            checked when the phase is made, without Keras; the values the
            Keras class checks itself (SGD's momentum in [0, 1], one clipping
            option, ...) when `build_optimizer` makes it. Defaults to `"adam"`.
        name: a label for logs and plots. Defaults to `"phase<k>"`.
        schedule: a learning-rate schedule spec starting from
            `learning_rate` (`"cosine:warmup=0.05"`, `"1cycle:max_lr=1e-2"`,
            `"plateau:factor=0.5,patience=2"`, ...; see
            `transferkit.optim.schedules.get_schedule`). Defaults to `None`
            (constant).
        lr_decay: discriminative fine-tuning: the head trains at the full
            rate, the backbone's last block at `lr_decay` times it, the block
            before at `lr_decay**2`, ... (`transferkit.optim.optimizers.
            block_multipliers`). A float in (0, 1], or `None` (default; one
            rate for all).
    """

    epochs: int
    learning_rate: float
    unfreeze: object = "none"
    optimizer: object = "adam"
    name: str = ""
    schedule: object = None
    lr_decay: object = None

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral) \
                or self.epochs < 0:
            raise TransferkitError(f"A phase's epochs must be an int >= 0, got {self.epochs!r}.")
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, numbers.Real) \
                or not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 10):
            raise TransferkitError(
                f"A learning rate must be a number in (0, 10), got {self.learning_rate!r}."
            )
        # Each fails early, with its own message, on a bad spec.
        if specs.is_plain_spec(self.optimizer):
            optimizer_specs.parse_optimizer(self.optimizer)
        else:  # a Keras optimizer, or Keras' serialized dict: Keras reads it
            from transferkit.optim import optimizers

            optimizers.describe(self.optimizer)
        schedules.get_schedule(self.schedule)
        if self.lr_decay is not None and (
            isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real)
            or not 0 < self.lr_decay <= 1
        ):
            raise TransferkitError(f"lr_decay must be in (0, 1] or None, got {self.lr_decay!r}.")
        parse_plan(self.unfreeze)

    def to_dict(self):
        from transferkit.optim import optimizers

        optimizer = optimizers.describe(self.optimizer)
        optimizer.pop("learning_rate", None)  # the phase's own, below
        return {"name": self.name, "epochs": int(self.epochs),
                "learning_rate": float(self.learning_rate),
                "unfreeze": str(parse_plan(self.unfreeze)), "optimizer": optimizer,
                "schedule": schedules.get_schedule(self.schedule).describe(),
                "lr_decay": None if self.lr_decay is None else float(self.lr_decay)}

    def build_optimizer(self, model, steps_per_epoch=None, *, monitor="val_loss", blocks=None):
        """This phase's optimizer for `model`, and the callbacks its schedule needs.

        Args:
            model: the model the optimizer trains; with `lr_decay`, its
                backbone's blocks set the per-block rates.
            steps_per_epoch: optimizer steps per epoch. Needed by schedules
                that span the phase (`"cosine"`, `"1cycle"`, and `"power"` or
                `"exponential"` without `s`). Defaults to `None`.
            monitor: the metric a `"plateau"` schedule watches when its spec
                names none. Defaults to `"val_loss"`.
            blocks: block names for `lr_decay` (see
                `transferkit.optim.optimizers.block_multipliers`). Defaults
                to `None`.

        Returns:
            `(optimizer, callbacks)`: a new, unbuilt Keras optimizer, and the
            callbacks for `fit` (`ReduceLROnPlateau` for `"plateau"`, the
            momentum's for `"1cycle"`, none otherwise).

        Example:

        >>> optimizer, callbacks = Phase(3, 1e-3, optimizer="sgd:momentum=0.9",
        ...                              schedule="plateau").build_optimizer(None)
        >>> type(optimizer).__name__, [type(c).__name__ for c in callbacks]
        ('SGD', ['ReduceLROnPlateau'])
        """
        from transferkit.optim import optimizers

        total = None if steps_per_epoch is None else max(self.epochs * steps_per_epoch, 1)
        parts = schedules.get_schedule(self.schedule).build(
            self.learning_rate, total_steps=total, monitor=monitor)
        multipliers = None
        if self.lr_decay is not None:
            multipliers = optimizers.block_multipliers(model, ratio=self.lr_decay, blocks=blocks)
        optimizer = optimizers.get_optimizer(self.optimizer, parts.learning_rate,
                                             multipliers=multipliers)
        return optimizer, list(parts.callbacks)


def default_recipe(epochs=(5, 10), learning_rate=1e-3, fine_tune_factor=0.1, unfreeze="all",
                   optimizer="adam", schedule=None, lr_decay=None):
    """The two-phase recipe: train the head, then fine-tune with a lower rate.

    Args:
        epochs: `(head epochs, fine-tuning epochs)`. Defaults to `(5, 10)`.
            A zero skips a phase.
        learning_rate: phase 1's learning rate. Defaults to `1e-3`.
        fine_tune_factor: phase 2's rate is `learning_rate * fine_tune_factor`.
            Defaults to `0.1`.
        unfreeze: phase 2's freeze plan. Defaults to `"all"`.
        optimizer: optimizer name or spec for both phases. Defaults to `"adam"`.
        schedule: learning-rate schedule spec for both phases (each starts it
            afresh from its own rate). Defaults to `None` (constant).
        lr_decay: phase 2's per-block rate ratio (discriminative
            fine-tuning; see `Phase`). Defaults to `None`.

    Returns:
        A list of two `Phase`s.

    Example:

    >>> [p.learning_rate for p in default_recipe(learning_rate=1e-3)]
    [0.001, 0.0001]
    """
    epochs = tuple(epochs)
    if len(epochs) != 2:
        raise TransferkitError(f"epochs must be two numbers (head, fine-tune), got {epochs!r}.")
    if not isinstance(fine_tune_factor, numbers.Real) or not 0 < fine_tune_factor <= 1:
        raise TransferkitError(
            f"fine_tune_factor must be in (0, 1], got {fine_tune_factor!r}."
        )
    return [
        Phase(epochs[0], learning_rate, "none", optimizer, name="head", schedule=schedule),
        Phase(epochs[1], learning_rate * fine_tune_factor, unfreeze, optimizer, name="fine-tune",
              schedule=schedule, lr_decay=lr_decay),
    ]
