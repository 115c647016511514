"""Training curves as PNG files (matplotlib, no display needed)."""

import os


def plot_history(history, path, *, title=None, phases=None):
    """Plots loss (and accuracy, if logged) per epoch, phases marked.

    Args:
        history: dict of per-epoch lists (`loss`, `val_loss`, `accuracy`,
            ...; `None` where not logged), e.g. `FineTuner.history_`.
        path: the `.png` file to write.
        title: optional figure title.
        phases: optional list of dicts with `first_epoch` and `name` (as in
            `FineTuner.phases_`); a dashed line marks where each phase after
            the first starts.

    Example:

    >>> plot_history({"loss": [0.9, 0.5], "val_loss": [1.0, 0.7]}, "curves.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels = [("loss", "loss")]
    accuracy = next((k for k in ("accuracy", "binary_accuracy") if k in history), None)
    if accuracy:
        panels.append((accuracy, "accuracy"))
    figure = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    for index, (key, label) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            values = history.get(name)
            if values:
                points = [(e + 1, v) for e, v in enumerate(values) if v is not None]
                if points:
                    axes.plot(*zip(*points), style, marker="o", markersize=3,
                              label="validation" if name.startswith("val_") else "training")
        for phase in (phases or [])[1:]:
            axes.axvline(phase["first_epoch"] + 0.5, color="grey", linestyle=":", linewidth=1)
            axes.annotate(phase.get("name", ""), (phase["first_epoch"] + 0.6, 1.0),
                          xycoords=("data", "axes fraction"), va="top", fontsize=8,
                          color="grey")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.savefig(os.fspath(path), dpi=100)


def plot_grid(results, path, *, title=None):
    """Plots cross-validated accuracy (and log loss, if present) against `C`.

    A ridge regression's grid (`alpha`, `rmse`) plots its RMSE against alpha.

    Args:
        results: a list of dicts with `C`, `accuracy`, `accuracy_std`,
            optional `log_loss` and `chosen`, e.g. `LinearHead.cv_results_`;
            or with `alpha`, `rmse` and `chosen`.
        path: the `.png` file to write.
        title: optional figure title.

    Example:

    >>> plot_grid(head.cv_results_, "curves.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    ridge = "alpha" in results[0]
    parameter, meaning = ("alpha", "regularization strength") if ridge else (
        "C", "inverse regularization strength")
    panels = [("rmse", "cross-validated RMSE")] if ridge else [
        ("accuracy", "cross-validated accuracy")]
    if any(r.get("log_loss") is not None for r in results):
        panels.append(("log_loss", "cross-validated log loss"))
    figure = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    cs = [r[parameter] for r in results]
    for index, (key, label) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        values = [r[key] for r in results]
        errors = [r["accuracy_std"] for r in results] if key == "accuracy" else None
        axes.errorbar(cs, values, yerr=errors, marker="o", markersize=3, capsize=3)
        for r in results:
            if r.get("chosen"):
                axes.axvline(r[parameter], color="grey", linestyle=":", linewidth=1)
                axes.annotate(f"chosen {parameter}={r[parameter]:g}", (r[parameter], 1.0),
                              xycoords=("data", "axes fraction"), va="top", fontsize=8,
                              color="grey")
        axes.set_xscale("log")
        axes.set_xlabel(f"{parameter} ({meaning})")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.savefig(os.fspath(path), dpi=100)


def plot_folds(histories, path, *, title=None):
    """Overlays each fold's validation loss and accuracy per epoch.

    Args:
        histories: one history dict per fold (`val_loss`, `val_accuracy`).
        path: the `.png` file to write.
        title: optional figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels = [k for k in ("val_loss", "val_accuracy") if any(h.get(k) for h in histories)]
    figure = Figure(figsize=(5.5 * max(len(panels), 1), 4), layout="constrained")
    for index, key in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for fold, history in enumerate(histories):
            points = [(e + 1, v) for e, v in enumerate(history.get(key) or []) if v is not None]
            if points:
                axes.plot(*zip(*points), marker="o", markersize=3, label=f"fold {fold + 1}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(key.replace("_", " "))
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.savefig(os.fspath(path), dpi=100)
