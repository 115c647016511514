"""Quiet start: TensorFlow's native start-up log lines kept off the terminal.

Importing TensorFlow 2.21 loads native libraries that log as they load
(`WARNING: All log messages before absl::InitializeLog() is called...`,
`oneDNN custom operations are on`, `Could not find cuda drivers`), and the
first device lookup logs `failed call to cuInit` on a machine without a GPU.
`TF_CPP_MIN_LOG_LEVEL` does not hide them: they are written before it is
read. They come twice per process, because
`tensorflow.python.profiler.internal._pywrap_profiler_plugin`, loaded late in
`import tensorflow`, carries its own copy of the logging library.

`quiet_tensorflow()` hides them by pointing the process's stderr file
descriptor (fd 2, where native code writes) at a temporary file while
`tensorflow` is imported and its devices are first listed, then pointing it
back. Python's `sys.stderr` keeps writing to the terminal meanwhile, and an
import that fails gives back what the native libraries wrote before the
error is raised. Nothing else of the process is touched.

Example:

>>> from transferkit import quiet_tensorflow
>>> quiet_tensorflow()  # before Keras is imported  # doctest: +SKIP
True
>>> import keras  # no C++ start-up lines  # doctest: +SKIP
"""

import contextlib
import importlib.abc
import importlib.util
import io
import os
import sys
import tempfile


def quiet_tensorflow():
    """Hides TensorFlow's native start-up log lines when it is first imported.

    Installs an import hook for `tensorflow` (Keras' TensorFlow backend
    imports it): that import, and the first listing of the devices (where
    `cuInit` is tried), run under `native_stderr_captured()`. The hook
    removes itself after that one import. Call it before Keras is imported;
    the `transferkit` command does, unless given `--verbose`.

    Returns:
        `True` if the hook is installed (or already was), `False` if
        TensorFlow was already imported: its lines are out already.

    Example:

    >>> quiet_tensorflow()  # doctest: +SKIP
    True
    """
    if "tensorflow" in sys.modules:
        return False
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    return True


@contextlib.contextmanager
def native_stderr_captured():
    """Points fd 2 at a temporary file for the block; `sys.stderr` stays on the terminal.

    What native code writes to fd 2 meanwhile is dropped, unless the block
    raises: then it is written to stderr before the exception goes on, so
    that a real failure (a library that does not load) still shows why.

    Example:

    >>> with native_stderr_captured():
    ...     os.write(2, b"hidden\\n")  # doctest: +SKIP
    """
    _flush(sys.stderr)
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        python_stderr = sys.stderr
        stand_in = None
        if _writes_to_fd2(python_stderr):  # Python's own messages still show
            sys.stderr = stand_in = _StandIn(python_stderr, terminal)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            if stand_in is not None:
                # A logging handler made meanwhile (absl's) keeps the stand-in:
                # from now on it writes to the real sys.stderr.
                stand_in.fd = None
                if sys.stderr is stand_in:
                    sys.stderr = python_stderr
            os.dup2(terminal, 2)
            os.close(terminal)
            if failed:
                capture.seek(0)
                os.write(2, capture.read())


class _StandIn(io.TextIOBase):
    """`sys.stderr` during the capture: writes to `fd` (the terminal), then to `stream`."""

    def __init__(self, stream, fd):
        super().__init__()
        self.stream, self.fd = stream, fd

    @property
    def encoding(self):
        return self.stream.encoding

    @property
    def errors(self):
        return self.stream.errors

    def write(self, text):
        if self.fd is None:
            return self.stream.write(text)
        os.write(self.fd, text.encode(self.encoding or "utf-8", self.errors or "strict"))
        return len(text)

    def flush(self):
        if self.fd is None:
            self.stream.flush()

    def fileno(self):
        return self.stream.fileno() if self.fd is None else self.fd

    def isatty(self):
        return self.stream.isatty()

    def writable(self):
        return True


def _writes_to_fd2(stream):
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capture, a StringIO, None
        return False


def _flush(stream):
    with contextlib.suppress(AttributeError, OSError, ValueError):
        stream.flush()


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do, with a loader that runs it quietly."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # once; and the lookup below must not find us
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None \
                and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Runs `loader`'s `exec_module` (and lists the devices) with native stderr captured."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # The module keeps the real loader: nothing after the import sees this one.
        module.__loader__ = module.__spec__.loader = self.loader
        with native_stderr_captured():
            self.loader.exec_module(module)
            # The first device lookup tries CUDA (`failed call to cuInit` without a
            # GPU); it takes milliseconds, and would otherwise log at the first op.
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()

    def __getattr__(self, name):  # is_package, get_resource_reader, ...
        return getattr(self.loader, name)
