"""What penalties a model carries, whether they reach the loss, and proof."""

import dataclasses
import math

import keras
import numpy as np

from transferkit import penalties
from transferkit._walk import BIAS_SLOTS, KERNEL_SLOTS, iter_layers, weight_slots

ACTIVITY = "activity"


class AuditMismatch(AssertionError):
    """A model's loss does not carry the penalties its audit expects."""


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One regularized weight (or one layer's output, for activity penalties).

    Attributes:
        layer: the layer's name, prefixed by its enclosing models' names.
        weight: `kernel`, `bias`, `depthwise_kernel`, ..., or `activity`.
        penalty: the regularizer, e.g. `l2(0.0001)`.
        shape: the weight's shape (`None` for activity).
        value: the penalty's current value (`None` for activity: it depends
            on the inputs).
        active: whether Keras adds it to the loss now. Keras counts penalties
            of trainable weights only: a frozen weight's penalty is inactive
            until it is unfrozen.
        saved: whether a `.keras` file of the model keeps it.
    """

    layer: str
    weight: str
    penalty: str
    shape: tuple | None
    value: float | None
    active: bool
    saved: bool


class RegularizationAudit:
    """The penalties on a model, weight by weight, and a check against its loss.

    Made by `transferkit.regularize` (the penalties it set) or
    `transferkit.audit` (every penalty a model carries).

    Attributes:
        entries: list of `AuditEntry`.

    Example:

    >>> import keras, transferkit
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> report = transferkit.regularize(model, kernel="l2:1e-4")
    >>> report.verify(model).num_active
    1
    """

    def __init__(self, entries, variables=()):
        self.entries = list(entries)
        # `(variable, regularizer)` pairs, parallel to the weight entries, so
        # that `verify` can find each one's term in `model.losses` and compare
        # it with the penalty promised here.
        self._variables = list(variables)

    @property
    def total(self):
        """Sum of the active weight penalties (activity ones excluded)."""
        return math.fsum(e.value for e in self.entries if e.active and e.value is not None)

    @property
    def num_active(self):
        return sum(e.active for e in self.entries if e.weight != ACTIVITY)

    @property
    def frozen(self):
        """Entries whose weights are frozen: inactive until unfrozen."""
        return [e for e in self.entries if not e.active]

    @property
    def unsaved(self):
        """Entries that a `.keras` file of the model would lose."""
        return [e for e in self.entries if not e.saved]

    def verify(self, model, rtol=1e-4, atol=1e-7):
        """Checks that `model.losses` holds every active penalty of this audit.

        Each active weight's term in `model.losses` must equal the penalty
        computed independently with NumPy from the weight's current value;
        frozen weights are skipped (Keras leaves them out of the loss).
        Activity penalties depend on the inputs and are not checked here.

        Args:
            model: the model the audit describes.
            rtol: relative tolerance of the comparison. Defaults to `1e-4`
                (Keras sums in float32, NumPy in float64).
            atol: absolute tolerance. Defaults to `1e-7`.

        Returns:
            `self`, so that `regularize(...).verify(model)` chains.

        Raises:
            AuditMismatch: naming the first weights whose penalty is missing
                from the loss or has another value.
        """
        terms = _weight_terms(model)
        problems = []
        weight_entries = [e for e in self.entries if e.weight != ACTIVITY]
        for entry, (variable, regularizer) in zip(weight_entries, self._variables):
            where = f"{entry.layer}.{entry.weight}"
            term = terms.get(id(variable))
            if not entry.active:
                continue
            if term is None:
                problems.append(f"{where}: {entry.penalty} is not in model.losses")
                continue
            expected = penalties.penalty_value(regularizer, variable)
            if not math.isclose(term, expected, rel_tol=rtol, abs_tol=atol):
                problems.append(f"{where}: loss has {term:.6g}, numpy gives {expected:.6g}")
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise AuditMismatch("; ".join(problems[:5]) + more)
        return self

    def to_dict(self):
        return {
            "total": self.total,
            "num_active": self.num_active,
            "num_frozen": len(self.frozen),
            "entries": [dataclasses.asdict(e) for e in self.entries],
        }

    def summary(self):
        layers = len({e.layer for e in self.entries})
        line = (
            f"{len(self.entries)} penalties on {layers} layers; "
            f"active weight penalty total {self.total:.6g}"
        )
        if self.frozen:
            line += f"; {len(self.frozen)} frozen (inactive until unfrozen)"
        if self.unsaved:
            line += f"; {len(self.unsaved)} would be lost on save"
        return line

    def to_table(self, max_rows=None):
        """The entries as a text table, followed by the summary line."""
        header = ("layer", "weight", "shape", "penalty", "value", "status")
        rows = [header]
        entries = self.entries if max_rows is None else self.entries[:max_rows]
        for e in entries:
            status = "active" if e.active else "frozen"
            if not e.saved:
                status += ", not saved"
            rows.append(
                (
                    e.layer,
                    e.weight,
                    "x".join(map(str, e.shape)) if e.shape else "-",
                    e.penalty,
                    f"{e.value:.4g}" if e.value is not None else "per batch",
                    status,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if max_rows is not None and len(self.entries) > max_rows:
            lines.append(f"... {len(self.entries) - max_rows} more")
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self):
        return self.to_table()

    def __repr__(self):
        return f"<RegularizationAudit: {self.summary()}>"

    def __len__(self):
        return len(self.entries)


def audit(model):
    """Lists every weight and activity penalty that `model` carries.

    Reads the penalties from the model itself (as loaded from a file, say), so
    it shows what `regularize` or the layers' own constructor arguments set.
    A penalty set on a variable but not on its layer is listed as not saved.

    Args:
        model: a built Keras model.

    Returns:
        A `RegularizationAudit`.

    Example:

    >>> import keras, transferkit
    >>> model = keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2, kernel_regularizer="l2")]
    ... )
    >>> [e.weight for e in transferkit.audit(model).entries]
    ['kernel']
    """
    return build_audit(model, _regularized_slots(model))


def build_audit(model, slots):
    """An audit of `slots`: `(layer_name, layer, attribute, variable, saved)`."""
    trainable = {id(v) for v in model.trainable_weights}
    weight_entries, variables, activity_entries = [], [], []
    for name, layer, attribute, variable, saved in slots:
        if variable is None:
            regularizer = layer.activity_regularizer
            activity_entries.append(
                AuditEntry(name, ACTIVITY, penalties.describe(regularizer), None, None, True, saved)
            )
            continue
        regularizer = variable.regularizer
        weight_entries.append(
            AuditEntry(
                layer=name,
                weight=variable.name,
                penalty=penalties.describe(regularizer),
                shape=tuple(variable.shape),
                # Keras' own computation, fast on any backend; `verify` checks
                # it independently with NumPy.
                value=float(keras.ops.convert_to_numpy(regularizer(variable))),
                active=id(variable) in trainable,
                saved=saved and getattr(layer, attribute, None) is regularizer,
            )
        )
        variables.append((variable, regularizer))
    return RegularizationAudit(weight_entries + activity_entries, variables)


def _regularized_slots(model):
    for name, layer, saved in iter_layers(model):
        for attribute, variable in weight_slots(layer, {**KERNEL_SLOTS, **BIAS_SLOTS}):
            if variable.regularizer is not None:
                yield name, layer, attribute, variable, saved
        if getattr(layer, "activity_regularizer", None) is not None:
            yield name, layer, "activity_regularizer", None, saved


def _weight_terms(model):
    """Maps `id(variable)` to its term in `model.losses`, as Keras computed it.

    Keras appends one term per trainable variable with a regularizer, in the
    order of `model.trainable_weights`, after any `add_loss` terms (activity
    penalties) of the last call: so the weight terms are the list's tail.
    """
    regularized = [v for v in model.trainable_weights if v.regularizer is not None]
    losses = model.losses
    if not regularized:
        return {}
    if len(losses) < len(regularized):
        return {}
    tail = losses[len(losses) - len(regularized):]
    return {
        id(v): float(np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64))
        for v, t in zip(regularized, tail)
    }
