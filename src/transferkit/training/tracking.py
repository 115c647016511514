"""Live logs of training: an epoch-by-epoch CSV file and TensorBoard, across phases.

`FineTuner` runs one `fit` per phase, so Keras' `CSVLogger` and
`TensorBoard` would restart their epoch count at each phase (and the CSV
file with it). The callbacks here are those two, told by `FineTuner` which
phase runs (`set_phase`): the epoch is counted over all phases, and each row
or step carries the phase and the learning rate.

- `EpochCSVLogger`: one row per epoch, written as it ends: `epoch` (1-based,
  over all phases), any constant columns (`fold`, `variant`), `phase` (its
  name), `learning_rate`, then the metrics.
- `EpochTensorBoard`: Keras' scalars per epoch over all phases, plus `phase`
  (the phase index: its steps mark the phase boundaries); the learning rate
  is Keras' own `learning_rate` scalar.
- `MLflowRun`: one MLflow run of a command: its parameters at the start,
  the metrics of every epoch as it ends (`callback`), the run folder's files
  (model, report, metrics) at the end; `mlflow_run` opens and closes it.
- `log_callbacks` makes them for a run folder as `TrainingConfig.log` says.

Example:

>>> logger = EpochCSVLogger("runs/ants.partial/training_log.csv")  # doctest: +SKIP
>>> FineTuner(default_recipe((2, 3)), callbacks=[logger]).fit(model, x, y)  # doctest: +SKIP
"""

import contextlib
import csv
import json
import os

import keras

from transferkit.errors import TransferkitError

CSV_FILE = "training_log.csv"
TENSORBOARD_DIR = "logs"
MLFLOW_URI = "./mlruns"  # a local file store
MLFLOW_EXPERIMENT = "transferkit"


class _PhaseAware:
    """What `FineTuner` tells a callback before each phase's `fit`."""

    phase_index, phase_name, first_epoch = 0, None, 0

    def set_phase(self, index, phase, first_epoch):
        """Phase `index` (a `Phase`) runs next; its `fit`'s epoch 0 is `first_epoch` overall."""
        self.phase_index, self.phase_name = index, phase.name
        self.first_epoch = first_epoch

    def learning_rate(self):
        """The optimizer's rate now (a per-step schedule's value at this step)."""
        rate = getattr(self.model.optimizer, "learning_rate", None)
        return None if rate is None else float(keras.ops.convert_to_numpy(rate))


class EpochCSVLogger(_PhaseAware, keras.callbacks.CSVLogger):
    """Keras' `CSVLogger` over several `fit` calls: one row per epoch of all phases.

    The file is appended to (its header written once, when it is empty); an
    existing header fixes the columns, so that the rows of a resumed run or
    of the next fold line up. Each row is flushed as its epoch ends.

    Args:
        filename: the CSV file.
        columns: constant columns put after `epoch`, like `{"fold": 2}`.
            Defaults to `None`: none.
        separator: the field separator. Defaults to `","`.

    Example:

    >>> logger = EpochCSVLogger("log.csv", columns={"fold": 1})
    >>> logger.filename
    'log.csv'
    """

    def __init__(self, filename, columns=None, separator=","):
        super().__init__(os.fspath(filename), separator=separator, append=True)
        self.columns = dict(columns or {})

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        header = _header(self.filename, self.sep)
        if header:  # the columns of the rows before
            self.keys = header[1:]

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: v for k, v in (logs or {}).items() if k != "learning_rate"}
        if self.keys is None:
            self.keys = [*self.columns, "phase", "learning_rate", *sorted(logs)]
        row = {**logs, **self.columns, "phase": self.phase_name,
               "learning_rate": self.learning_rate()}
        super().on_epoch_end(self.first_epoch + epoch + 1, row)


class EpochTensorBoard(_PhaseAware, keras.callbacks.TensorBoard):
    """Keras' `TensorBoard` over several `fit` calls: epoch scalars over all phases.

    Each epoch's metrics (and Keras' `learning_rate`) go to `log_dir/train`
    and `log_dir/validation` at the epoch's step over all phases, with a
    `phase` scalar: the index of the phase the epoch belongs to.

    Args:
        log_dir: the folder of the event files.
        **kwargs: `keras.callbacks.TensorBoard`'s other arguments. Defaults:
            no graph, no profiling.

    Example:

    >>> board = EpochTensorBoard("runs/ants.partial/logs")  # doctest: +SKIP
    """

    def __init__(self, log_dir, **kwargs):
        kwargs = {"write_graph": False, "profile_batch": 0, **kwargs}
        super().__init__(log_dir=os.fspath(log_dir), **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(self.first_epoch + epoch,
                             {**(logs or {}), "phase": self.phase_index})


class MLflowRun:
    """One MLflow run: parameters, metrics per epoch, and files, through `MlflowClient`.

    No global MLflow state is changed (no `mlflow.set_tracking_uri`): the
    client is this object's. A local file store (the default `./mlruns`)
    is allowed in `MLFLOW_ALLOW_FILE_STORE` unless that is set: MLflow 3
    keeps it working but asks for that opt-in.

    Args:
        uri: the tracking URI. Defaults to `None`: `./mlruns`.
        run_name: the run's name, like `"train runs/ants"`. Defaults to `None`.
        experiment: the experiment, made when missing. Defaults to `"transferkit"`.

    Example:

    >>> tracked = MLflowRun("file:./mlruns", run_name="train runs/ants")  # doctest: +SKIP
    >>> tracked.log_params(config.to_dict())  # doctest: +SKIP
    >>> FineTuner(callbacks=[tracked.callback()]).fit(model, x, y)  # doctest: +SKIP
    >>> tracked.log_files("runs/ants"); tracked.end()  # doctest: +SKIP
    """

    def __init__(self, uri=None, *, run_name=None, experiment=MLFLOW_EXPERIMENT):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise TransferkitError("--log mlflow needs the mlflow package: pip install "
                                   "'transferkit[mlflow]'.") from e
        self.uri = MLFLOW_URI if uri is None else os.fspath(uri)
        if "://" not in self.uri or self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None \
                else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        except Exception as e:  # MLflow's own errors: a bad URI, a store it cannot open
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TransferkitError(f"Cannot start an MLflow run in --mlflow-uri {self.uri}: "
                                   f"{first}") from e

    def log_params(self, params):
        """Logs `params` (texts; other values as JSON) as the run's parameters."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[
            Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()])

    def log_metrics(self, metrics, step):
        """Logs the numbers of `metrics` (`None`s left out) at `step`."""
        from mlflow.entities import Metric

        now = _milliseconds()
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, int(step)) for k, v in metrics.items() if v is not None])

    def callback(self, prefix=""):
        """A callback logging each epoch's metrics, `learning_rate` and `phase`, keys prefixed.

        The step is the epoch over all phases, 1-based as in the CSV log.
        """
        return _MLflowLogger(self, prefix)

    def log_files(self, folder):
        """Logs the files at the top of `folder` (the model, report, metrics...) as artifacts."""
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                self.client.log_artifact(self.run_id, path)

    def end(self, status="FINISHED"):
        """Ends the run: `"FINISHED"`, `"FAILED"` or `"KILLED"`."""
        self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def mlflow_run(kinds, uri, run_name):
    """An `MLflowRun` for the block when `kinds` has `"mlflow"`, else `None`.

    The run ends `FINISHED` after the block, `KILLED` after Ctrl-C, `FAILED`
    after an error.
    """
    if "mlflow" not in kinds:
        yield None
        return
    tracked = MLflowRun(uri, run_name=run_name)
    try:
        yield tracked
    except BaseException as e:
        tracked.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    tracked.end()


class _MLflowLogger(_PhaseAware, keras.callbacks.Callback):
    def __init__(self, tracked, prefix):
        super().__init__()
        self.tracked, self.prefix = tracked, prefix

    def on_epoch_end(self, epoch, logs=None):
        values = {**(logs or {}), "learning_rate": self.learning_rate(),
                  "phase": self.phase_index}
        self.tracked.log_metrics({self.prefix + k: v for k, v in values.items()},
                                 step=self.first_epoch + epoch + 1)


def _milliseconds():
    import time

    return int(time.time() * 1000)


def log_callbacks(kinds, folder, *, columns=None, name=None, tracked=None):
    """The callbacks of `kinds` (a `TrainingConfig.log`) writing into `folder`.

    `"csv"` appends to `folder/training_log.csv` (`columns` added to each
    row); `"tensorboard"` writes to `folder/logs`, or `folder/logs/name`
    (one run of several: a fold, a variant). Both need a `folder` (`None`:
    a run without a folder). `tracked`, an `MLflowRun`, adds its callback
    (keys prefixed with `name/`).

    Example:

    >>> [type(c).__name__ for c in log_callbacks(("csv",), "out")]
    ['EpochCSVLogger']
    """
    found = [] if tracked is None else [tracked.callback(f"{name}/" if name else "")]
    if folder is None:
        return found
    if "csv" in kinds:
        found.append(EpochCSVLogger(os.path.join(folder, CSV_FILE), columns=columns))
    if "tensorboard" in kinds:
        found.append(EpochTensorBoard(os.path.join(folder, TENSORBOARD_DIR, *(
            [name] if name is not None else []))))
    return found


def trim_csv(path, epochs):
    """Keeps the header and the rows of the first `epochs` epochs of the CSV log at `path`.

    After an interruption the log may hold an epoch that the checkpoint does
    not (the row is written just before the checkpoint): a resumed run from
    `epochs` completed epochs appends after them, without a repeated epoch.
    Nothing happens when there is no file.
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= epochs]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def _header(path, separator):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f, delimiter=separator), None)
