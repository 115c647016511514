"""The learning-rate range test (Smith, 2015; fastai's `lr_find`) for Keras models.

Train for a few hundred batches while the learning rate grows exponentially
from tiny to huge, and watch the loss: flat while the rate is too small to
matter, falling once it is large enough, then blowing up when it is too
large. A good rate lies on the falling part, below where the loss is lowest.
The model itself trains during the test; its variables are put back bit for
bit afterwards.
"""

import math
import numbers
import random
import warnings

import keras
import numpy as np

from transferkit.data.stream import even_multiple
from transferkit.errors import TransferkitError
from transferkit.outputs import output_file


class LRFinder:
    """Finds a learning rate by training with one that grows exponentially.

    `fit` trains `model` (its trainable weights only: a frozen backbone stays
    frozen, and BatchNormalization layers keep the mode they have) for up to
    `steps` batches, cycling through shuffled data, with the learning rate of
    batch `i` set to `start * (end / start) ** (i / (steps - 1))`. It records
    each batch's training loss (penalties included, as `fit` reports it),
    smooths the losses with a bias-corrected exponential moving average, and
    stops early once the smoothed loss exceeds `divergence` times its
    minimum (or is not finite). Then it puts every variable of the model
    back (weights, BatchNormalization statistics, random states) bit for
    bit, even when interrupted. The model is never compiled by the finder: a
    compiled model keeps its optimizer, optimizer state and loss.

    The suggestion (`suggestion_`) is the rate where the smoothed loss is
    lowest, divided by 10 (Smith; fastai's `lr_min`): at the minimum the
    rate is already about to make training unstable, and an order of
    magnitude lower is still on the steep, fast-learning part of the curve,
    with a margin. `steepest_rate_` (fastai's `lr_steep`: the steepest
    descent of the smoothed loss against log(rate), before the minimum) is
    the bolder, noisier alternative; both are marked in `plot`. As in
    fastai, both pass over the first tenth of the batches, where the moving
    average has seen too few losses to be trusted.

    Args:
        start: the first learning rate, > 0. Defaults to `1e-7`.
        end: the last learning rate, > `start`. Defaults to `10.0`.
        steps: the most batches to train, an int >= 10. Defaults to 200.
        batch_size: Defaults to 32.
        optimizer: an optimizer name or spec: `"adam"` (default),
            `"sgd:momentum=0.9"`, ... (`transferkit.optim.optimizers.get_optimizer`).
            The rate found is for this optimizer: use the same one to train.
        loss: a Keras loss. Defaults to the one `FineTuner` uses for the
            output layer: sparse categorical cross-entropy after a softmax,
            binary cross-entropy after a sigmoid, mean squared error else.
        smoothing: the moving average's factor beta in [0, 1): the smoothed
            loss after batch i is `avg_i / (1 - beta ** (i + 1))` with
            `avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`. Defaults to
            `0.98`; `0` turns smoothing off.
        divergence: stop once the smoothed loss exceeds this multiple of its
            minimum so far, a number > 1. Defaults to `4.0`.
        seed: an int for a repeatable batch order, or `None` (default).
        verbose: `1` shows a progress bar with the rate and loss. Defaults
            to `0`.

    Attributes (after `fit`):
        learning_rates_: float64 array, the rate of each batch run (the
            optimizer holds it in float32).
        losses_: float64 array, each batch's training loss, as recorded.
        smoothed_losses_: float64 array, the smoothed losses.
        minimum_rate_: the rate at the lowest smoothed loss.
        suggestion_: `minimum_rate_ / 10`.
        steepest_rate_: the rate of steepest descent before the minimum, or
            `None` when the loss did not fall (then a warning says so).
        stopped_early_: whether divergence ended the test before `steps`.

    Example:

    >>> model = transferkit.build("efficientnet_lite0", 2)  # doctest: +SKIP
    >>> model.get_layer("backbone").trainable = False  # doctest: +SKIP
    >>> finder = LRFinder(seed=0).fit(model, x, y)  # doctest: +SKIP
    >>> print(f"train the head at {finder.suggestion_:.2g}")  # doctest: +SKIP
    >>> finder.plot("lr_find.png")  # doctest: +SKIP
    """

    def __init__(self, start=1e-7, end=10.0, steps=200, *, batch_size=32, optimizer="adam",
                 loss=None, smoothing=0.98, divergence=4.0, seed=None, verbose=0):
        self.start = start
        self.end = end
        self.steps = steps
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.loss = loss
        self.smoothing = smoothing
        self.divergence = divergence
        self.seed = seed
        self.verbose = verbose

    def fit(self, model, x, y):
        """Runs the range test on `model`, then restores it; returns `self`.

        Args:
            model: a built `keras.Model` with trainable weights.
            x: training inputs, a NumPy array (images for a transferkit
                model, or the features of a frozen backbone for its
                `head_model`).
            y: the targets, one per input (class indices for softmax and
                binary heads).

        Example:

        >>> LRFinder(steps=100, seed=0).fit(model, x, y).suggestion_  # doctest: +SKIP
        """
        self.check_parameters()
        if not isinstance(model, keras.Model):
            raise TransferkitError(f"model must be a keras.Model, got {type(model).__name__}.")
        if not model.built:
            raise TransferkitError(
                f"Model {model.name!r} is not built: call it on data or give it an Input "
                "first, so that its weights exist."
            )
        if not model.trainable_weights:
            raise TransferkitError(
                f"Model {model.name!r} has no trainable weights: unfreeze what should train "
                "(e.g. the head) before looking for its learning rate."
            )
        y = np.asarray(y)
        if not hasattr(x, "shape"):  # arrays (and images decoded on demand) are indexed as they are
            x = np.asarray(x)
        if len(x) == 0 or len(x) != len(y):
            raise TransferkitError(
                f"x and y must hold the same number (> 0) of samples; got {len(x)} and {len(y)}."
            )
        loss = self.loss if self.loss is not None else _default_loss(model)

        start, end, last = float(self.start), float(self.end), self.steps - 1
        rates = np.array([start * (end / start) ** (i / last) for i in range(self.steps)])
        rng = np.random.default_rng(random.randrange(2**31) if self.seed is None else self.seed)
        size = min(self.batch_size, len(x))
        multiple = even_multiple()  # JAX's DataParallel splits each batch evenly
        batches = _batches(len(x), max(size - size % multiple, multiple), rng)
        progress = keras.utils.Progbar(self.steps, stateful_metrics=["lr", "loss"]) \
            if self.verbose else None
        saved = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
        losses, smoothed = [], []
        average, best, stopped = 0.0, math.inf, False
        try:
            trainer = _Trainer(model)
            from transferkit.optim.optimizers import get_optimizer

            optimizer = get_optimizer(self.optimizer)
            trainer.compile(optimizer=optimizer, loss=loss)
            for i, rate in enumerate(rates):
                optimizer.learning_rate = rate
                batch = next(batches)
                logs = trainer.train_on_batch(x[batch], y[batch], return_dict=True)
                value = float(logs["loss"])
                average = self.smoothing * average + (1 - self.smoothing) * value
                smooth = average / (1 - self.smoothing ** (i + 1))
                losses.append(value)
                smoothed.append(smooth)
                if progress is not None:
                    progress.update(i + 1, [("lr", rate), ("loss", smooth)])
                if not math.isfinite(smooth) or smooth > self.divergence * best:
                    stopped = i + 1 < self.steps
                    break
                best = min(best, smooth)
        finally:
            for variable, value in zip(model.variables, saved):
                variable.assign(value)

        self.learning_rates_ = rates[:len(losses)]
        self.losses_ = np.array(losses, dtype=np.float64)
        self.smoothed_losses_ = np.array(smoothed, dtype=np.float64)
        self.stopped_early_ = bool(stopped)
        self._suggest()
        return self

    def plot(self, path, *, title=None, overwrite=False):
        """Plots the loss against the learning rate (log scale), suggestions marked.

        The raw losses are drawn faintly, the smoothed ones as a line; the
        y axis spans the smoothed curve up to its minimum, so the blow-up at
        the end runs off the top. The file is written atomically.

        Args:
            path: the `.png` file to write.
            title: optional figure title.
            overwrite: replace an existing file. Defaults to `False`.

        Example:

        >>> finder.plot("lr_find.png")  # doctest: +SKIP
        """
        if not hasattr(self, "suggestion_"):
            raise TransferkitError("Call fit(model, x, y) before plot().")
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        rates, losses, smoothed = self.learning_rates_, self.losses_, self.smoothed_losses_
        figure = Figure(figsize=(6.5, 4.5), layout="constrained")
        axes = figure.add_subplot()
        axes.plot(rates, losses, color="0.75", linewidth=1, label="loss per batch")
        axes.plot(rates, smoothed, color="C0", label="smoothed loss")
        best = int(np.nanargmin(np.where(np.isfinite(smoothed), smoothed, np.nan)))
        axes.plot(rates[best], smoothed[best], "o", color="C0", markersize=5,
                  label=f"minimum at {self.minimum_rate_:.2g}")
        axes.axvline(self.suggestion_, color="C3", linestyle="--",
                     label=f"suggestion {self.suggestion_:.2g} (minimum / 10)")
        if self.steepest_rate_ is not None:
            axes.axvline(self.steepest_rate_, color="C2", linestyle=":",
                         label=f"steepest descent {self.steepest_rate_:.2g}")
        head = smoothed[:best + 1]
        low, high = float(np.min(head)), float(np.max(head))
        margin = 0.1 * (high - low) or 0.1 * abs(high) or 0.1
        axes.set_ylim(low - margin, high + margin)
        axes.set_xscale("log")
        axes.set_xlabel("learning rate (log scale)")
        axes.set_ylabel("training loss")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        if title:
            figure.suptitle(title)
        with output_file(path, overwrite=overwrite, suffix=".png", flag="plot") as temporary:
            figure.savefig(temporary, format="png", dpi=100)

    def to_dict(self):
        """The settings and results, as JSON-ready Python values."""
        if not hasattr(self, "suggestion_"):
            raise TransferkitError("Call fit(model, x, y) before to_dict().")
        return {
            "start": float(self.start), "end": float(self.end), "steps": int(self.steps),
            "batch_size": int(self.batch_size), "optimizer": self.optimizer,
            "smoothing": float(self.smoothing), "divergence": float(self.divergence),
            "seed": self.seed,
            "learning_rates": self.learning_rates_.tolist(), "losses": self.losses_.tolist(),
            "smoothed_losses": self.smoothed_losses_.tolist(),
            "minimum_rate": self.minimum_rate_, "suggestion": self.suggestion_,
            "steepest_rate": self.steepest_rate_, "stopped_early": self.stopped_early_,
        }

    def check_parameters(self):
        """Checks the settings; a bad one is a one-line `TransferkitError` (`fit` calls it)."""
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value) or value <= 0:
                raise TransferkitError(f"{name} must be a finite rate > 0, got {value!r}.")
        if self.start >= self.end:
            raise TransferkitError(
                f"start must be below end, like 1e-7 and 10; got {self.start!r} and {self.end!r}."
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) \
                or self.steps < 10:
            raise TransferkitError(f"steps must be an int >= 10, like 200; got {self.steps!r}.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral) \
                or self.batch_size < 1:
            raise TransferkitError(f"batch_size must be an int >= 1, got {self.batch_size!r}.")
        from transferkit.optim.optimizers import describe

        describe(self.optimizer)  # a one-line error for an unknown name or parameter
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, numbers.Real) \
                or not 0 <= self.smoothing < 1:
            raise TransferkitError(
                f"smoothing must be in [0, 1), like 0.98; got {self.smoothing!r}."
            )
        if isinstance(self.divergence, bool) or not isinstance(self.divergence, numbers.Real) \
                or not math.isfinite(self.divergence) or self.divergence <= 1:
            raise TransferkitError(
                f"divergence must be a finite number > 1, like 4; got {self.divergence!r}."
            )
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, numbers.Integral)):
            raise TransferkitError(f"seed must be an int or None, got {self.seed!r}.")

    def _suggest(self):
        rates, smoothed = self.learning_rates_, self.smoothed_losses_
        # As fastai does, the first tenth of the batches is passed over: the
        # moving average has seen too few losses there to be trusted.
        skip = self.steps // 10 if len(smoothed) > self.steps // 10 + 1 else 0
        usable = np.isfinite(smoothed) & (np.arange(len(smoothed)) >= skip)
        if not usable.any():
            raise TransferkitError(
                f"The loss was not finite from the first batch (rate {rates[0]:g}); check the "
                "data and the loss."
            )
        best = int(np.argmin(np.where(usable, smoothed, np.inf)))
        self.minimum_rate_ = float(rates[best])
        self.suggestion_ = self.minimum_rate_ / 10
        self.steepest_rate_ = None
        if best > skip:
            slopes = np.gradient(smoothed[skip:best + 1], np.log(rates[skip:best + 1]))
            self.steepest_rate_ = float(rates[skip + int(np.argmin(slopes))])
        else:
            warnings.warn(
                f"The loss did not fall between {self.start:g} and {self.end:g}; try a lower "
                "start.", stacklevel=3)


def find_learning_rate(model, x, y, *, start=1e-7, end=10.0, steps=200, batch_size=32,
                       optimizer="adam", loss=None, smoothing=0.98, divergence=4.0, seed=None,
                       verbose=0):
    """Runs the learning-rate range test on `model` and returns the fitted `LRFinder`.

    `LRFinder(...).fit(model, x, y)` in one call; see `LRFinder` for the
    arguments, the procedure and the suggestion rule. The model's weights
    are the same afterwards, bit for bit.

    Returns:
        The fitted `LRFinder`: `suggestion_`, `learning_rates_`, `losses_`,
        `smoothed_losses_`, `plot(path)`.

    Example:

    >>> model = transferkit.build("efficientnet_lite0", 2)  # doctest: +SKIP
    >>> model.get_layer("backbone").trainable = False  # doctest: +SKIP
    >>> finder = find_learning_rate(model, x, y, seed=0)  # doctest: +SKIP
    >>> finder.plot("lr_find.png")  # doctest: +SKIP
    >>> recipe = default_recipe(learning_rate=finder.suggestion_)  # doctest: +SKIP
    >>> FineTuner(recipe).fit(model, x, y)  # doctest: +SKIP
    """
    return LRFinder(start, end, steps, batch_size=batch_size, optimizer=optimizer, loss=loss,
                    smoothing=smoothing, divergence=divergence, seed=seed,
                    verbose=verbose).fit(model, x, y)


class _Trainer(keras.Model):
    """Trains `model`'s variables without compiling `model` itself."""

    def __init__(self, model):
        super().__init__(name=f"{model.name}_lr_finder")
        self.wrapped = model

    def call(self, inputs, training=None):
        return self.wrapped(inputs, training=training)


def _default_loss(model):
    from transferkit.models.heads import default_loss

    try:
        return default_loss(model)
    except TransferkitError:
        raise TransferkitError(
            f"Cannot tell model {model.name!r}'s output activation; give loss=."
        ) from None


def _batches(count, size, rng):
    """Endless batches of `size` indices, through a new permutation each pass."""
    order = np.empty(0, dtype=np.int64)
    while True:
        while len(order) < size:
            order = np.concatenate([order, rng.permutation(count)])
        yield order[:size]
        order = order[size:]
