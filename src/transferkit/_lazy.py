"""Package attributes imported on first use (PEP 562), so that importing a
package does not import Keras; and modules imported ahead, in a thread."""

import importlib
import threading


def lazy_exports(package, exports):
    """`(__getattr__, __dir__)` for `package` (a module name) exporting `exports`.

    `exports` maps each public name to the module that defines it; a name is
    imported when first read, then kept in the package's namespace.

    Example:

    >>> __getattr__, __dir__ = lazy_exports(__name__, {"train": "transferkit.workflows.train"})
    """
    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return sorted(set(vars(importlib.import_module(package))) | set(exports))

    return __getattr__, __dir__


def import_ahead(*modules):
    """Imports `modules` in a background thread; returns the thread.

    For what a command needs later (scikit-learn after the feature
    extraction, matplotlib for the plot): imported while the main thread
    computes (TensorFlow and NumPy release the GIL), they are there when
    asked for. An import that fails here fails again, with its error, where
    the module is imported for use; Python's import lock makes the main
    thread wait for an import under way.

    Example:

    >>> import_ahead("json").join()
    """
    def run():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  (reported where it is used)
                pass

    thread = threading.Thread(target=run, name="transferkit-import-ahead", daemon=True)
    thread.start()
    return thread
