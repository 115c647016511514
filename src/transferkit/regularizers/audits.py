"""What penalties and constraints a model carries, whether they act, and proof."""

import dataclasses
import math

import keras
import numpy as np

from transferkit.regularizers import penalties, projections
from transferkit.regularizers.layers import constrained_slots, regularized_slots

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

    def __init__(self, entries, variables=(), constraints=None):
        self.entries = list(entries)
        # `(variable, regularizer)` pairs, parallel to the weight entries, so
        # that `verify` can find each one's term in `model.losses` and compare
        # it with the penalty promised here.
        self._variables = list(variables)
        # `transferkit.audit` lists the model's weight constraints too.
        self.constraints = constraints if constraints is not None else ConstraintAudit([])

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
            "constraints": self.constraints.to_dict()["entries"],
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
        if self.constraints:
            line += f"; {self.constraints.summary()}"
        return line

    def to_table(self, max_rows=None):
        """The entries as a text table (then any constraints'), and the summary line."""
        lines = []
        if self.entries or not self.constraints:
            header = ("layer", "weight", "shape", "penalty", "value", "status")
            rows = []
            entries = self.entries if max_rows is None else self.entries[:max_rows]
            for e in entries:
                status = "active" if e.active else "frozen"
                if not e.saved:
                    status += ", not saved"
                value = f"{e.value:.4g}" if e.value is not None else "per batch"
                rows.append((e.layer, e.weight, _shape(e.shape), e.penalty, value, status))
            lines += _table(header, rows, len(self.entries), max_rows)
        if self.constraints:
            if lines:
                lines.append("")
            lines += self.constraints.table_lines(max_rows)
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self):
        return self.to_table()

    def __repr__(self):
        return f"<RegularizationAudit: {self.summary()}>"

    def __len__(self):
        return len(self.entries)


def audit(model):
    """Lists every weight and activity penalty, and every constraint, of `model`.

    Reads the penalties from the model itself (as loaded from a file, say), so
    it shows what `regularize` or the layers' own constructor arguments set.
    A penalty set on a variable but not on its layer is listed as not saved.
    The weight constraints (what `constrain` or constructor arguments set)
    are in the audit's `constraints`, a `ConstraintAudit`.

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
    report = build_audit(model, regularized_slots(model))
    report.constraints = build_constraint_audit(model, constrained_slots(model))
    return report


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


def _shape(shape):
    return "x".join(map(str, shape)) if shape else "-"


def _table(header, rows, total, max_rows):
    rows = [header] + list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if max_rows is not None and total > max_rows:
        lines.append(f"... {total - max_rows} more")
    return lines


# --------------------------------------------------------------- constraints


@dataclasses.dataclass(frozen=True)
class ConstraintEntry:
    """One weight with a constraint.

    Attributes:
        layer: the layer's name, prefixed by its enclosing models' names.
        weight: `kernel`, `bias`, `depthwise_kernel`, ...
        constraint: the constraint, e.g. `max_norm(3, axis=[0, 1, 2])`.
        shape: the weight's shape.
        on_variable: whether the variable carries it: the optimizer applies
            `variable.constraint` after each update. A constraint set only on
            the layer attribute of a built layer is not applied (until the
            model is saved and reloaded).
        trainable: whether the weight is trainable in the model (frozen
            weights are not updated, so not projected).
        saved: whether a `.keras` file of the model keeps it.
        satisfied: whether the weight's current values satisfy it (checked
            with NumPy). Constraints act after each update, so pretrained
            weights may not satisfy a new one until the first training step.
    """

    layer: str
    weight: str
    constraint: str
    shape: tuple
    on_variable: bool
    trainable: bool
    saved: bool
    satisfied: bool

    @property
    def active(self):
        """Whether the optimizer applies it at the next update."""
        return self.on_variable and self.trainable

    @property
    def status(self):
        if not self.on_variable:
            text = "config only (not applied)"
        else:
            text = "active" if self.trainable else "frozen"
        if not self.saved:
            text += ", not saved"
        if not self.satisfied:
            text += ", not yet satisfied"
        return text


class ConstraintAudit:
    """The weight constraints on a model, weight by weight.

    Made by `transferkit.constrain` (the constraints it set); `audit(model)`
    holds one as its `constraints`.

    Attributes:
        entries: list of `ConstraintEntry`.

    Example:

    >>> import keras
    >>> from transferkit.regularizers.constraints import constrain
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> report = constrain(model, kernel="max_norm:3", apply_now=True)
    >>> report.verify(model, satisfied=True).num_active
    1
    """

    def __init__(self, entries, variables=()):
        self.entries = list(entries)
        # `(variable, constraint)` pairs, parallel to the entries.
        self._variables = list(variables)

    @property
    def num_active(self):
        return sum(e.active for e in self.entries)

    @property
    def frozen(self):
        """Entries on frozen weights: not applied until unfrozen."""
        return [e for e in self.entries if e.on_variable and not e.trainable]

    @property
    def unsaved(self):
        return [e for e in self.entries if not e.saved]

    @property
    def config_only(self):
        """Entries set on the layer attribute only: the optimizer ignores them."""
        return [e for e in self.entries if not e.on_variable]

    @property
    def unsatisfied(self):
        """Entries whose weights break their constraint now."""
        return [e for e in self.entries if not e.satisfied]

    def verify(self, model, satisfied=False):
        """Checks that each weight still carries its constraint, where the optimizer reads it.

        Args:
            model: the model the audit describes.
            satisfied: also require the current weights to satisfy their
                constraints (checked again now, with NumPy), as they do after
                a training step or `constrain(..., apply_now=True)`.
                Defaults to `False`.

        Returns:
            `self`.

        Raises:
            AuditMismatch: naming the first weights that fail.
        """
        tracked = {id(v) for v in model.weights}
        problems = []
        for entry, (variable, constraint) in zip(self.entries, self._variables):
            where = f"{entry.layer}.{entry.weight}"
            if id(variable) not in tracked:
                problems.append(f"{where}: not a weight of {model.name!r}")
            elif entry.on_variable and variable.constraint is not constraint:
                problems.append(f"{where}: {entry.constraint} is no longer on the variable")
            elif satisfied and not projections.satisfies(constraint, variable):
                problems.append(f"{where}: the weights break {entry.constraint}")
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise AuditMismatch("; ".join(problems[:5]) + more)
        return self

    def to_dict(self):
        return {
            "num_active": self.num_active,
            "num_frozen": len(self.frozen),
            "num_unsatisfied": len(self.unsatisfied),
            "entries": [dataclasses.asdict(e) for e in self.entries],
        }

    def summary(self):
        layers = len({e.layer for e in self.entries})
        line = f"{len(self.entries)} constraints on {layers} layers, {self.num_active} active"
        if self.frozen:
            line += f"; {len(self.frozen)} frozen (applied once unfrozen)"
        if self.config_only:
            line += f"; {len(self.config_only)} in the layer config only (not applied)"
        if self.unsaved:
            line += f"; {len(self.unsaved)} would be lost on save"
        if self.unsatisfied:
            line += (
                f"; {len(self.unsatisfied)} not yet satisfied (projected at the next "
                "update, or now with apply_now=True)"
            )
        return line

    def table_lines(self, max_rows=None):
        header = ("layer", "weight", "shape", "constraint", "status")
        entries = self.entries if max_rows is None else self.entries[:max_rows]
        rows = [(e.layer, e.weight, _shape(e.shape), e.constraint, e.status) for e in entries]
        return _table(header, rows, len(self.entries), max_rows)

    def to_table(self, max_rows=None):
        """The entries as a text table, followed by the summary line."""
        return "\n".join(self.table_lines(max_rows) + [self.summary()])

    def __str__(self):
        return self.to_table()

    def __repr__(self):
        return f"<ConstraintAudit: {self.summary()}>"

    def __len__(self):
        return len(self.entries)


def build_constraint_audit(model, slots):
    """An audit of `slots`: `(layer_name, layer, attribute, variable, saved)`."""
    trainable = {id(v) for v in model.trainable_weights}
    entries, variables = [], []
    for name, layer, attribute, variable, saved in slots:
        on_layer = getattr(layer, attribute, None)
        constraint = variable.constraint if variable.constraint is not None else on_layer
        entries.append(
            ConstraintEntry(
                layer=name,
                weight=variable.name,
                constraint=projections.describe(constraint),
                shape=tuple(variable.shape),
                on_variable=variable.constraint is not None,
                trainable=id(variable) in trainable,
                saved=saved and _same_constraint(on_layer, constraint),
                satisfied=projections.satisfies(constraint, variable),
            )
        )
        variables.append((variable, constraint))
    return ConstraintAudit(entries, variables)


def _same_constraint(a, b):
    if a is b:
        return a is not None
    if not isinstance(a, keras.constraints.Constraint) or type(a) is not type(b):
        return False
    return a.get_config() == b.get_config()
