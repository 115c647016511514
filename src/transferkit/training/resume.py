"""Resuming an interrupted fine-tuning run: a checkpoint after every epoch.

`FineTuner(partial=PartialRun(folder, identity))` keeps, after every
completed epoch, a checkpoint in `folder` (the `train` workflow's
`<out>.partial/`), and a later `FineTuner` given the same `PartialRun` folder
continues from the last complete epoch: finished phases are skipped, a phase
cut short restarts at its next epoch with its optimizer state.

A checkpoint is a subfolder `epoch-NNNN` (NNNN: epochs completed over all
phases), written under a temporary name and renamed when complete, so any
`epoch-*` folder is whole; the older ones are removed after the rename. It
holds:

- `model.weights.h5`: the whole model's weights at the end of the epoch
  (`transferkit.saving.save_weights`);
- `best.npz`: the weights of the best epoch so far (`BestWeights`), one array
  per `model.weights`;
- `optimizer.npz`: the running phase's optimizer variables (step count,
  learning rate, moments);
- `state.json`: the phase index and epochs done in it, each started phase's
  logs and learning rates (the history), whether it ended, the best value and
  epoch, the early-stopping and `ReduceLROnPlateau` counters, the seed, and
  `identity` (the configuration and the data), which a resume must match.

So that a resumed epoch draws the same randomness as the uninterrupted one,
every epoch is seeded from `(seed, phase, epoch)` alone: the random layers'
seed generators (dropout, augmentation) at the start of each epoch, and the
order of the training samples (arrays are served by a `PyDataset` shuffled
per epoch, `AugmentedFeatures` with one copy, instead of `fit`'s own
shuffle; balanced draws are made from the same per-epoch generator), and
MixUp/CutMix from `(seed, phase, batch index)` (`MixedBatches`). Inputs given
as a `PyDataset` keep their own order.

Not kept: the state of callbacks given to `FineTuner(callbacks=...)`, and the
features of frozen phases (computed again, from the same backbone weights, or
read from a `FeatureCache` outside the run folder); `augmented_copies` are
computed again with the same seeds. A schedule's callbacks need nothing more:
`ReduceLROnPlateau`'s counters are kept, per-step schedules and
`MomentumScheduler` follow the optimizer's step count.
"""

import errno
import json
import os
import re
import shutil
import uuid

import keras
import numpy as np

from transferkit.data.buckets import LengthBuckets
from transferkit.data.mixing import MixedBatches
from transferkit.errors import TransferkitError
from transferkit.models.lora import lora_layers
from transferkit.runs import json_ready
from transferkit.saving import save_weights
from transferkit.training.features import AugmentedFeatures

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
LORA_FILE = "lora.npz"  # a LoRA model's weights as they are (not merged)
_CHECKPOINT = re.compile(r"epoch-(\d+)\Z")
# Counters of EarlyStopping and ReduceLROnPlateau that a resumed phase carries on.
_COUNTERS = ("wait", "best", "best_epoch", "cooldown_counter")


class PartialRun:
    """The checkpoints of one run in `folder`: loads the last, writes new ones.

    Args:
        folder: where the checkpoints go (made at the first one), or `None`
            for none: the epochs are then only seeded as a checkpointed run
            seeds them, so that its numbers equal such a run's (`compare`).
        identity: a JSON-able dict (configuration, data) that a resume must
            match exactly; a checkpoint made with another is refused.
        seed: the run's seed, or `None`: then one is drawn and kept in the
            checkpoint, so that a resume still draws the same randomness.

    Attributes:
        completed: epochs completed over all phases in the last checkpoint.
        total: epochs planned over all phases (set by `FineTuner.fit`, or read by `load`).
    """

    def __init__(self, folder, identity, *, seed=None):
        self.folder = None if folder is None else os.fspath(folder)
        self.identity = identity
        # Without a seed, one drawn now (kept in the checkpoints).
        self.seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31) \
            if seed is None else int(seed)
        self.completed, self.total = 0, None
        self.phases = {}  # phase index -> its saved state (logs, rates, done, ...)
        self._loaded = None  # (state, checkpoint path) of the checkpoint found

    def load(self):
        """Reads the last checkpoint, checking its identity; returns whether there was one."""
        latest = self.latest()
        if latest is None:
            return False
        try:
            with open(os.path.join(latest, STATE_FILE)) as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise TransferkitError(f"Cannot read the checkpoint in {latest} ({e}); remove "
                                   f"{self.folder} to start again.") from e
        difference = _difference(state.get("identity"), json_ready(self.identity))
        if difference is not None:
            raise TransferkitError(
                f"{self.folder} was made by a run with different options or data ({difference});"
                " resume with the same ones, or remove the folder to start again.")
        self.seed = state["seed"]
        self.completed, self.total = state["completed"], state["total"]
        self.phases = {int(k): v for k, v in state["phases"].items()}
        self._loaded = (state, latest)
        return True

    def latest(self):
        """The newest complete checkpoint folder, or `None`."""
        if self.folder is None or not os.path.isdir(self.folder):
            return None
        found = sorted((int(m.group(1)), entry) for entry in os.listdir(self.folder)
                       if (m := _CHECKPOINT.match(entry)))
        return os.path.join(self.folder, found[-1][1]) if found else None

    def restore(self, model, best):
        """Gives `model` and `best` (a `BestWeights`) the loaded checkpoint's state.

        Returns `{phase index: saved state}` of the phases started before
        (empty without a checkpoint). After a phase that ended, the model
        holds the best weights, as `BestWeights` leaves it.
        """
        if self._loaded is None:
            return {}
        state, path = self._loaded
        model.load_weights(os.path.join(path, WEIGHTS_FILE))
        if os.path.exists(os.path.join(path, LORA_FILE)):
            with np.load(os.path.join(path, LORA_FILE)) as f:
                for i, variable in enumerate(model.weights):
                    variable.assign(f[f"arr_{i}"])
        if os.path.exists(os.path.join(path, "best.npz")):
            with np.load(os.path.join(path, "best.npz")) as f:
                values = [f[f"arr_{i}"] for i in range(len(f.files))]
            best.restore_best(model, state["best"]["value"], state["best"]["epoch"], values,
                              give_back=self.phases[max(self.phases)]["done"])
        return dict(self.phases)

    def callback(self, model, index, phase, *, best, rates, stopper, scheduled):
        """The callback that checkpoints phase `index` of `model` after each epoch."""
        return _Checkpoint(self, model, index, phase, best, rates, stopper, scheduled)

    def data(self, data, index, start):
        """`fit`'s data arguments, with arrays served in an order seeded per epoch."""
        x = data["x"]
        if isinstance(x, np.ndarray) and data.get("y") is not None:
            x = AugmentedFeatures([x], data["y"], sample_weight=data.get("sample_weight"),
                                  batch_size=data["batch_size"], seed=[self.seed, index])
        if not isinstance(x, (AugmentedFeatures, LengthBuckets, MixedBatches)):
            return data
        return {**data, "x": _FromEpoch(x, start), "y": None, "sample_weight": None,
                "batch_size": None, "steps_per_epoch": x.steps_per_epoch, "shuffle": False,
                "validation_batch_size": data.get("validation_batch_size") or x.batch_size}

    def save(self, model, best, optimizer, state):
        """Writes one checkpoint (a new `epoch-N` folder), then drops the older ones."""
        if self.folder is None:
            return
        created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        try:
            self._save(model, best, optimizer, state)
        except BaseException:
            if created and not os.listdir(self.folder):  # no checkpoint to resume from
                os.rmdir(self.folder)
            raise

    def _save(self, model, best, optimizer, state):
        name = f"epoch-{state['completed']:04d}"
        tmp = os.path.join(self.folder, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        values = best.best_weights(model)
        moments = [keras.ops.convert_to_numpy(v) for v in optimizer.variables] \
            if optimizer is not None and optimizer.built else None
        # The arrays beside the weights, whose own space save_weights checks.
        needed = sum(a.nbytes for a in (values or []) + (moments or []))
        free = shutil.disk_usage(self.folder).free
        if free < needed + (1 << 20):
            raise OSError(errno.ENOSPC, f"No space left on device for a checkpoint ({needed:,} "
                          f"bytes needed, {free:,} free)", self.folder)
        os.mkdir(tmp)
        try:
            save_weights(model, os.path.join(tmp, WEIGHTS_FILE))
            if lora_layers(model):
                # Keras saves LoRA layers merged and zeroes both adapters on load,
                # which would leave them untrainable: the raw values as well.
                np.savez(os.path.join(tmp, LORA_FILE),
                         *[keras.ops.convert_to_numpy(v) for v in model.weights])
            if values is not None:
                np.savez(os.path.join(tmp, "best.npz"), *values)
            if moments is not None:
                np.savez(os.path.join(tmp, "optimizer.npz"), *moments)
            with open(os.path.join(tmp, STATE_FILE), "w") as f:
                json.dump(json_ready({**state, "identity": self.identity, "seed": self.seed}), f)
            target = os.path.join(self.folder, name)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.completed = state["completed"]
        for entry in os.listdir(self.folder):  # older checkpoints and killed writers' leftovers
            if entry != name and (_CHECKPOINT.match(entry) or entry.startswith(".epoch-")
                                  and ".tmp-" in entry and f".tmp-{os.getpid()}-" not in entry):
                shutil.rmtree(os.path.join(self.folder, entry), ignore_errors=True)

    def optimizer_values(self, index):
        """The saved optimizer variables of phase `index` when it was cut short, or `None`."""
        if self._loaded is None or index != max(self.phases) or self.phases[index]["done"]:
            return None
        path = os.path.join(self._loaded[1], "optimizer.npz")
        if not os.path.exists(path):
            return None
        with np.load(path) as f:
            return [f[f"arr_{i}"] for i in range(len(f.files))]


class _Checkpoint(keras.callbacks.Callback):
    """Seeds each epoch from `(seed, phase, epoch)`; checkpoints after it.

    Put it last: when a resumed phase starts it sets the optimizer and the
    counters of the callbacks before it, and at the end of an epoch it reads
    what they decided (a new best, early stopping).
    """

    def __init__(self, partial, full_model, index, phase, best, rates, stopper, scheduled):
        super().__init__()
        self.partial, self.full_model, self.index, self.phase = partial, full_model, index, phase
        self.best, self.rates, self.stopper, self.scheduled = best, rates, stopper, scheduled
        saved = partial.phases.get(index, {})
        self.logs = {k: list(v) for k, v in saved.get("logs", {}).items()}
        rates.values = list(saved.get("rates", []))
        self._counters = saved.get("counters")

    @property
    def counted(self):
        """The callbacks whose counters a resumed phase carries on."""
        return [c for c in ([self.stopper] if self.stopper else []) + list(self.scheduled)
                if any(hasattr(c, k) for k in _COUNTERS)]

    def on_train_begin(self, logs=None):
        values = self.partial.optimizer_values(self.index)
        if values is not None:
            optimizer = self.model.optimizer
            if not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            if [tuple(v.shape) for v in optimizer.variables] != [v.shape for v in values]:
                raise TransferkitError(
                    f"The optimizer state in {self.partial.folder} does not fit this model; "
                    "remove the folder to start again.")
            for variable, value in zip(optimizer.variables, values):
                variable.assign(value)
        for callback, counters in zip(self.counted, self._counters or []):
            for key, value in counters.items():
                setattr(callback, key, value)

    def on_epoch_begin(self, epoch, logs=None):
        states = _seed_states(self.model)
        for i, variable in enumerate(states):
            start = np.random.SeedSequence(
                [self.partial.seed, self.index, epoch, i]).generate_state(1)[0] % 2**31
            variable.assign(np.array([start, 0], dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.logs.setdefault(key, []).append(float(value))
        done = bool(self.model.stop_training) or epoch + 1 >= self.phase.epochs
        self.partial.phases[self.index] = {
            "logs": self.logs, "rates": list(self.rates.values), "done": done,
            "stopped_early": bool(self.stopper is not None and self.stopper.stopped_epoch > 0),
            "counters": [{k: getattr(c, k) for k in _COUNTERS if hasattr(c, k)}
                         for c in self.counted],
        }
        completed = sum(len(p["logs"].get("loss", [])) for p in self.partial.phases.values())
        self.partial.save(self.full_model, self.best, self.model.optimizer, {
            "phase": self.index, "epoch": epoch + 1, "completed": completed,
            "total": self.partial.total,
            "best": {"value": self.best.best, "epoch": self.best.best_epoch},
            "phases": self.partial.phases,
        })


class _FromEpoch(keras.utils.PyDataset):
    """An endless stream (`AugmentedFeatures`, `LengthBuckets`, ...) from epoch `epoch` on."""

    def __init__(self, data, epoch):
        super().__init__()
        self.data, self.offset = data, epoch * data.steps_per_epoch

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return self.data[int(index) + self.offset]


def _seed_states(model):
    """The seed generators' state variables of `model`'s layers (not weights)."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _difference(saved, now):
    """Where two identities differ first, as `key: then, now`, or `None`."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            inner = _difference(saved.get(key), now.get(key))
            if inner is not None:
                nested = isinstance(saved.get(key), dict) and isinstance(now.get(key), dict)
                return f"{key}.{inner}" if nested else f"{key}: {inner}"
        return None
    return None if saved == now else f"{saved!r} then, {now!r} now"
