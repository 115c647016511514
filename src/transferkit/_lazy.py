"""Package attributes imported on first use (PEP 562), so that importing a
package does not import Keras."""

import importlib


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

