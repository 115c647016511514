"""Output paths that cannot hurt: every file and folder transferkit writes.

Every command that writes goes through this module, so that one set of rules
holds everywhere:

- A path that could only be a mistake is refused before any work starts: an
  empty or blank path (an unset shell variable), the current folder or one
  above it, the file-system root, the home folder, and any path that holds
  the input data or lies inside it.
- An existing output is replaced only when the user asked for it: a folder
  with `overwrite=True` only if it is empty or a transferkit run of the same
  command (its `config.json` says so), a file only with `overwrite=True`.
- Output is written under a temporary name beside the target and renamed
  into place when complete; the final rename never replaces something that
  appeared meanwhile. A run folder is locked for the whole run (a lock file
  beside it), so a second run on the same folder fails at once; a lock left
  by a process that died is taken over.
- A full disk, a read-only file system or a denied permission ends in one
  `TransferkitError` line; the temporary output is removed and whatever was
  there before is untouched.
"""

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import time
import uuid
import warnings

from transferkit.errors import TransferkitError
from transferkit.runs import CONFIG_FILE

# Write failures that are about the place, not the program, and what to say.
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is too large for the file system",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def check_output_folder(path, command, *, inputs=(), overwrite=False):
    """Checks that `path` may become `command`'s run folder; returns it absolute.

    Nothing is written. Refused, with a one-line `TransferkitError`: an empty
    or blank path, the current folder or a folder above it, the root, the
    home folder, a path that is or holds or lies inside one of `inputs`, a
    missing parent folder, a file, and an existing non-empty folder unless
    `overwrite=True` and the folder is a previous `command` run.

    Args:
        path: the folder to create or replace.
        command: the writing command (`"train"`, `"cv"`, ...): `overwrite`
            replaces only a run whose `config.json` names the same command.
        inputs: paths the run reads (data folders, files); `None`s ignored.
        overwrite: allow replacing an empty folder or a previous `command`
            run. Defaults to `False` (an existing empty folder is still
            used: it holds nothing to lose).

    Example:

    >>> check_output_folder("runs/ants", "train", inputs=["photos"])  # doctest: +SKIP
    '/home/me/runs/ants'
    """
    target = _checked_path(path, "--out", inputs, folder=True)
    if not os.path.lexists(target):
        return target
    if not os.path.isdir(target):
        raise TransferkitError(f"{path} exists and is not a folder; choose another --out.")
    entries = sorted(os.listdir(target))
    if not entries:
        return target
    found = _run_command(target)
    if not overwrite:
        what = f"a previous {found} run" if found else f"not empty ({_listing(target, entries)})"
        hint = " or pass --overwrite to replace it" if found == command else ""
        raise TransferkitError(f"{path} is {what}; choose another --out{hint}.")
    if found != command:
        what = (f"a transferkit {found} run, not a {command} run" if found else
                f"not a transferkit run (it holds {_listing(target, entries)})")
        raise TransferkitError(
            f"{path} is {what}; --overwrite replaces only a previous {command} run or an empty "
            "folder. Choose another --out."
        )
    return target


def check_output_file(path, *, inputs=(), overwrite=False, suffix=None, flag="output"):
    """Checks that `path` may be written (or replaced); returns it absolute.

    Nothing is written. Refused: an empty or blank path, a folder, a path
    that is one of `inputs` or lies inside one, a missing parent folder, a
    wrong `suffix`, and an existing file unless `overwrite=True`.

    Args:
        path: the file to write.
        inputs: paths the command reads; `None`s ignored.
        overwrite: allow replacing an existing file. Defaults to `False`.
        suffix: the required ending (like `".keras"`), or `None`.
        flag: how the message names the path. Defaults to `"output"`.

    Example:

    >>> check_output_file("l2.keras", inputs=["model.keras"], suffix=".keras")  # doctest: +SKIP
    """
    target = _checked_path(path, flag, inputs, folder=False)
    if suffix is not None and not target.endswith(suffix):
        raise TransferkitError(f"{flag} {path} must end in {suffix}.")
    if os.path.isdir(target):
        raise TransferkitError(f"{flag} {path} is a folder; give a file name.")
    if os.path.lexists(target) and not overwrite:
        raise TransferkitError(
            f"{flag} {path} exists; choose another name or pass --overwrite to replace it."
        )
    return target


@contextlib.contextmanager
def output_folder(path, command, *, inputs=(), overwrite=False, space=0):
    """Writes a run folder complete or not at all; yields the folder to write into.

    On entry: `check_output_folder`, then the lock (a second run on `path`
    fails at once, naming the process that holds it) and an empty temporary
    folder beside `path`, so that a read-only or missing place fails before
    any work. On success the temporary folder is renamed to `path`; an
    existing folder is replaced only if `check_output_folder` allowed it and
    it is still the same folder. On any error the temporary folder is
    removed and `path` is left as it was; write failures (full disk,
    read-only, permission) become one-line `TransferkitError`s.

    With `path=None` it yields `None` and writes nothing.

    Args:
        path: the run folder, or `None`.
        command: the writing command, recorded for `overwrite` checks.
        inputs: paths the run reads, which the output must not touch.
        overwrite: see `check_output_folder`.
        space: bytes the run will need there at its peak (an estimate):
            less free space is an error on entry, before any work.
            Defaults to 0.

    Example:

    >>> with output_folder("runs/ants", "train", inputs=["photos"]) as tmp:  # doctest: +SKIP
    ...     save_model(model, os.path.join(tmp, "model.keras"))
    """
    if path is None:
        yield None
        return
    target = check_output_folder(path, command, inputs=inputs, overwrite=overwrite)
    parent, name = os.path.split(target)
    with friendly_write_errors(path), OutputLock(target, command):
        # Checked again under the lock: another run may have finished meanwhile.
        check_output_folder(path, command, inputs=inputs, overwrite=overwrite)
        _remove_leftovers(parent, name)
        before = _identity(target)
        tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.mkdir(tmp)
        try:
            _check_space(tmp, space, path)
            yield tmp
            _publish_folder(tmp, target, before, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def output_file(path, *, inputs=(), overwrite=False, suffix=None, flag="output"):
    """Writes one file complete or not at all; yields the temporary name to write.

    `check_output_file` first; the file is written under a temporary name
    beside `path` (same extension) and moved into place when complete.
    Without `overwrite` the move never replaces a file, even one that
    appeared while writing. Write failures become one-line errors.

    Example:

    >>> with output_file("lr_find.png", inputs=["photos"]) as tmp:  # doctest: +SKIP
    ...     figure.savefig(tmp)
    """
    check_output_file(path, inputs=inputs, overwrite=overwrite, suffix=suffix, flag=flag)
    with friendly_write_errors(path), atomic_output(path, replace=overwrite) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_output(path, replace=True):
    """Yields a temporary name beside `path`; moves it to `path` on success.

    The temporary file keeps `path`'s extension (Keras checks it) and sits in
    the same folder, so that the move is one step on one file system: a
    reader sees the old file or the complete new one, never half of it. On
    any error, or an interrupt, the temporary file is removed. With
    `replace=False` an existing `path` is never replaced (the move is a hard
    link, which fails if the name is taken).

    This is the primitive for files transferkit owns (caches, run-folder
    contents); outputs the user names go through `output_file`.

    Example:

    >>> with atomic_output("cache/model.weights.h5") as tmp:  # doctest: +SKIP
    ...     model.save_weights(tmp)
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    # Not mkstemp: its 0600 mode would stick to the result. The pid and a
    # random part keep concurrent writers apart.
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


class OutputLock:
    """A lock file beside an output: one writer at a time, across processes.

    The lock is `.NAME.lock` in the output's parent folder, held with the
    operating system's advisory lock (released by the kernel when the
    process dies, however it dies) and holding the owner's process id, host,
    command and start time for the message a second writer gets. A lock
    file whose owner is gone is taken over, with a warning.

    Example:

    >>> with OutputLock("/home/me/runs/ants", "train"):  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, target, command):
        parent, name = os.path.split(os.path.abspath(os.fspath(target)))
        self.target = os.path.join(parent, name)
        self.command = command
        self.path = os.path.join(parent, f".{name}.lock")
        self._fd = None

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    owner = _read_owner(fd)
                    raise TransferkitError(
                        f"{self.target} is being written by another run ({_describe(owner)}); "
                        "wait for it to finish or choose another --out."
                    )
                # The file may have been removed by its previous owner between
                # our open and our lock; then the lock is on a dead inode.
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        previous = _read_owner(fd)
        if previous:
            warnings.warn(f"Took over a stale lock on {self.target} ({_describe(previous)}, "
                          "no longer running).", stacklevel=2)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(owner).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info):
        # Removed while still held, so that no one locks the old inode.
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self._fd)
        self._fd = None


def write_error(error, path):
    """The one-line `TransferkitError` for a failed write, or `None`.

    Looks through `error` and its causes for an `OSError` that says the
    place cannot take the output (full disk, quota, read-only file system,
    denied permission) and words it with `path`, the output the user named.
    A denied permission counts only for files beside or under `path`: a
    denied read of an input is another matter.
    """
    area = os.path.dirname(os.path.abspath(os.fspath(path)))
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _WRITE_ERRORS:
            where = error.filename
            ours = where is None or os.path.abspath(os.fspath(where)).startswith(area)
            if error.errno not in (errno.EACCES, errno.EPERM) or ours:
                return TransferkitError(
                    f"Could not write {path}: {_WRITE_ERRORS[error.errno]}. Nothing was written "
                    "and nothing there before was changed; free some space, fix the "
                    "permissions or choose another output."
                )
        error = error.__cause__ or error.__context__
    return None


# --------------------------------------------------------------------------
# Checks.


def _checked_path(path, flag, inputs, folder):
    if path is None or not isinstance(path, (str, os.PathLike)):
        raise TransferkitError(f"{flag} must be a path; got {path!r}.")
    text = os.fspath(path)
    if isinstance(text, bytes) or not text.strip():
        raise TransferkitError(
            f"{flag} is empty; give a path like runs/ants (is a shell variable unset?)."
        )
    target = os.path.realpath(os.path.expanduser(text))
    forbidden = {os.path.realpath(os.path.expanduser("~")): "your home folder",
                 os.path.realpath(os.sep): "the root of the file system"}
    if target in forbidden:
        raise TransferkitError(f"{flag} {text} is {forbidden[target]}; give a new folder "
                               "such as runs/ants.")
    here = os.path.realpath(os.getcwd())
    if _inside(here, target):
        where = "the current folder" if here == target else "above the current folder"
        raise TransferkitError(f"{flag} {text} is {where}; give a new folder such as runs/ants.")
    for given in inputs:
        if given is None or not isinstance(given, (str, os.PathLike)):
            continue
        source = os.path.realpath(os.path.expanduser(os.fspath(given)))
        if _inside(source, target) or _inside(target, source):
            relation = ("is" if source == target else
                        "holds" if _inside(source, target) else "lies inside")
            raise TransferkitError(
                f"{flag} {text} {relation} the input {os.fspath(given)}; write the output "
                "elsewhere, such as runs/NAME."
            )
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise TransferkitError(f"The folder {parent} does not exist; create it first.")
    return target


def _check_space(folder, needed, path):
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise TransferkitError(
            f"Not enough free space for {path}: the run needs about {_size(needed)} there "
            f"and {_size(free)} are free; free some space or choose another output.")


def _size(count):
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.0f} MiB" if count >= 10 * 2**20 else f"{count / 2**20:.1f} MiB"


def _inside(path, folder):
    """Whether `path` is `folder` or lies under it (both real, absolute)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _run_command(folder):
    """The `command` in `folder`'s `config.json`, or `None`."""
    try:
        with open(os.path.join(folder, CONFIG_FILE), encoding="utf-8") as f:
            command = json.load(f).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def _listing(folder, entries, shown=3):
    names = [e + ("/" if os.path.isdir(os.path.join(folder, e)) else "") for e in entries]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# --------------------------------------------------------------------------
# Writing.


def _identity(path):
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _remove_leftovers(parent, name):
    """Removes the temporary folders of earlier runs on `name` that were killed.

    They are transferkit's own (`.NAME.tmp-PID-*`, `.NAME.old-*`), and the
    lock on `name` is held: no live run is writing them.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(tmp-\d+|old)-[0-9a-f]{{8}}\Z")
    left = [entry for entry in os.listdir(parent) if pattern.match(entry)
            and os.path.isdir(os.path.join(parent, entry))
            and not os.path.islink(os.path.join(parent, entry))]
    for entry in left:
        shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    if left:
        warnings.warn(f"Removed {len(left)} unfinished temporary folder(s) left beside "
                      f"{os.path.join(parent, name)} by an interrupted run.", stacklevel=4)


def _publish_folder(tmp, target, before, given):
    """Moves `tmp` to `target`; replaces only the folder seen as `before`."""
    parent, name = os.path.split(target)
    old = None
    if before is not None and _identity(target) == before:
        old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        if _identity(old) != before:  # swapped between the check and the move
            os.rename(old, target)
            old = None
    try:
        # A directory rename replaces at most an empty folder: anything else
        # that appeared at `target` meanwhile makes it fail.
        os.rename(tmp, target)
    except OSError as e:
        if old is not None:
            os.rename(old, target)
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise
        kept = f"{target}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.rename(tmp, kept)
        raise TransferkitError(
            f"{given} appeared while this run was writing; it was left untouched and this run "
            f"was written to {kept} instead."
        ) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _move_no_clobber(tmp, path):
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise TransferkitError(f"{path} appeared while writing it; it was left untouched. "
                               "Choose another name or pass --overwrite.") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
            raise
        # No hard links on this file system: check, then rename.
        if os.path.lexists(path):
            raise TransferkitError(f"{path} appeared while writing it; it was left "
                                   "untouched.") from None
        os.rename(tmp, path)


@contextlib.contextmanager
def friendly_write_errors(path):
    """Turns a failed write under the block into `write_error(error, path)`'s line.

    Errors that are not write failures pass through unchanged.

    Example:

    >>> with friendly_write_errors("runs/ants/report.html"):  # doctest: +SKIP
    ...     write_page()
    """
    try:
        yield
    except TransferkitError:
        raise
    except Exception as e:
        translated = write_error(e, path)
        if translated is None:
            raise
        raise translated from None


# --------------------------------------------------------------------------
# Locking, per platform.

try:
    import fcntl

    def _try_lock(fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd):
        # Lock a byte far past the owner's record, which stays readable.
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_owner(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        return json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return {}


def _describe(owner):
    if not owner:
        return "owner unknown"
    return (f"process {owner.get('pid')} on {owner.get('host')}, transferkit "
            f"{owner.get('command')}, started {owner.get('started')}")
