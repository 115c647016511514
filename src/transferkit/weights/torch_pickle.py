"""Read a PyTorch `.pth` state dict into NumPy arrays, safely, without torch.

`torch.load` unpickles with the full power of `pickle`: a crafted checkpoint
can run any code. This reader admits only the handful of globals a state dict
of plain tensors is made of, maps each to a small stand-in defined here, and
refuses everything else with `UnsafePickleError` before it is called.

Both formats `torch.save` writes are read:

* the legacy stream (torch < 1.6, or `_use_new_zipfile_serialization=False`):
  five pickles in a row (magic number, protocol version, system info, the
  object, the list of storage keys), then each storage as an 8-byte
  little-endian element count and its raw bytes;
* the zip archive (torch >= 1.6): `<archive>/data.pkl` holds the object and
  `<archive>/data/<key>` the raw bytes of each storage.

Nothing in the file is trusted to be small: every tensor must fit in the
elements its storage holds, every storage in the bytes the file really has,
and what is read and returned is bounded by `max_bytes`, so a crafted file of
a few hundred bytes cannot make the reader allocate gigabytes.
"""

import collections
import io
import math
import os
import pickle
import struct
import zipfile

import numpy as np

from transferkit.errors import TransferkitError

# The first pickle of a legacy file; torch/serialization.py writes it so.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Far above any backbone transferkit converts (EfficientNet-Lite0: 19 MB; the
# largest Keras application, ConvNeXt-XLarge, about 1.4 GB in float32), and
# what a crafted file may make the reader allocate at most, twice over (the
# storages read, then the arrays returned).
DEFAULT_MAX_BYTES = 4 * 1024**3
# torch's sizes, strides and offsets are int64: anything above is no tensor.
_INT64_MAX = 2**63 - 1
# Zip members are read in blocks this size, never all at once.
_BLOCK = 1 << 20

# The storage classes torch pickles by name, and the element type of each.
# BFloat16 has no NumPy type: its 16 bits are read as such and widened to
# float32 below, which is exact.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(TransferkitError):
    """The file asks the unpickler for something a tensor state dict never needs."""


class _Sealed:
    """Base of the stand-ins: the pickle cannot reach inside them.

    The BUILD opcode sets attributes on whatever object is on the stack; on a
    stand-in it could swap a validated shape for one that reads past a
    buffer. Defining `__setstate__` puts BUILD under our control: refused.
    """

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafePickleError(
            f"Refusing to set state on {type(self).__name__.lstrip('_')} in the "
            "checkpoint: a tensor state dict never does that."
        )


class _Function(_Sealed):
    """An allowed global that is called while unpickling (sealed, see `_Sealed`)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class _StorageType(_Sealed):
    """Stand-in for a `torch.*Storage` class: only its element type matters."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage(_Sealed):
    """A flat run of elements, filled in once the raw bytes have been read."""

    __slots__ = ("storage_type", "key", "numel", "array", "root", "root_offset")

    def __init__(self, storage_type, key, numel):
        self.storage_type = storage_type
        self.key = key
        self.numel = numel
        self.array = None  # 1-D NumPy array, set by the reader.
        self.root = None  # For a view: the storage it lies in, and where.
        self.root_offset = 0


class _Tensor(_Sealed):
    """What `torch._utils._rebuild_tensor_v2` would build, kept as a recipe.

    Nothing is allocated until `to_numpy`, and `check` comes first: the
    recipe's numbers come from the file.
    """

    __slots__ = ("storage", "offset", "shape", "strides")

    def __init__(self, storage, offset, shape, strides):
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides

    @property
    def numel(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        """The bytes of the array `to_numpy` returns (bfloat16 widens to 4)."""
        name = self.storage.storage_type.name
        itemsize = 4 if name == "BFloat16Storage" else self.storage.storage_type.dtype.itemsize
        return self.numel * itemsize

    def check(self, name, path):
        """Raises `UnsafePickleError` unless the view lies within its storage.

        Args:
            name: str, the tensor's key in the state dict (for the message).
            path: str, the checkpoint file (for the message).
        """
        # Cut short: names and shapes come from the file, and may be long.
        where = (
            f"{path}: tensor {name!r:.80} (size {self.shape!r:.80}, "
            f"stride {self.strides!r:.80}, offset {self.offset})"
        )
        # Checked before anything below multiplies them: NumPy needs the byte
        # extent of the shape to fit in an int64 (even with a zero in it), and
        # torch the offset and strides.
        itemsize = self.storage.storage_type.dtype.itemsize
        extent = math.prod(max(n, 1) for n in self.shape) * itemsize
        if max((self.offset, extent, *self.strides)) > _INT64_MAX:
            raise UnsafePickleError(
                f"{where} overflows int64: the file is damaged or crafted, not written by torch."
            )
        storage_numel = self.storage.numel
        if self.numel:
            # as_strided trusts its arguments: a view past the storage's end
            # would read whatever memory follows. Check the last element lies
            # inside.
            last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides))
            if last >= storage_numel:
                raise UnsafePickleError(
                    f"{where} would reach element {last} of a storage of {storage_numel}: "
                    "the file is damaged or crafted."
                )
        if self.numel > storage_numel:
            # A zero stride repeats elements (torch's expand), and so do
            # overlapping ones: copied out, one stored element could fill any
            # amount of memory. The tensors of a saved state dict do not.
            raise UnsafePickleError(
                f"{where} has {self.numel:,} elements but its storage only {storage_numel:,}: "
                "refusing to expand it. Save tensors with .contiguous() before torch.save."
            )

    def to_numpy(self):
        """Returns a fresh, contiguous array with this tensor's values (after `check`)."""
        storage = self.storage
        if storage.root is None:
            base = storage.array
        else:
            base = storage.root.array[storage.root_offset : storage.root_offset + storage.numel]
        if self.numel == 0:
            array = np.zeros(self.shape, base.dtype)
        else:
            itemsize = base.dtype.itemsize
            # A dimension of extent 1 is never stepped along: its stride,
            # which torch leaves free, must not overflow NumPy's.
            view = np.lib.stride_tricks.as_strided(
                base[self.offset :],
                shape=self.shape,
                strides=tuple(
                    s * itemsize if n > 1 else 0 for n, s in zip(self.shape, self.strides)
                ),
                writeable=False,
            )
            array = np.array(view, copy=True)
        if storage.storage_type.name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _check_ints(value, what):
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise UnsafePickleError(
            f"Malformed tensor in checkpoint: {what} must be a tuple of "
            f"non-negative ints, got {value!r:.80}."
        )


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    """Stand-in for `torch._utils._rebuild_tensor_v2`; validates, then defers.

    The bounds are checked by `_Tensor.check` once the tensor's name is known.
    """
    if not isinstance(storage, _Storage):
        raise UnsafePickleError(
            f"Malformed tensor in checkpoint: its storage is {type(storage).__name__}, "
            "not a persistent storage reference."
        )
    _check_ints((storage_offset,), "the storage offset")
    _check_ints(size, "the size")
    _check_ints(stride, "the stride")
    if len(size) != len(stride):
        raise UnsafePickleError(
            f"Malformed tensor in checkpoint: size {size!r:.80} and stride {stride!r:.80} "
            "differ in rank."
        )
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """Stand-in for `torch._utils._rebuild_parameter`: a parameter is its tensor."""
    if not isinstance(data, _Tensor):
        raise UnsafePickleError("Malformed parameter in checkpoint: it does not wrap a tensor.")
    return data


def _allowed_globals():
    """The globals a state dict may name, fresh for each file (nothing shared)."""
    allowed = {
        # The built-in class: immutable, so BUILD cannot alter it.
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor_v2),
        ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): _Function(_rebuild_parameter),
    }
    for name in _STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of a tensor state dict.

    Args:
        file: a binary file object positioned at the start of a pickle.
        storages: dict, filled with key -> `_Storage` for each persistent id
            seen. `None` (default) refuses persistent ids altogether.
    """

    def __init__(self, file, storages=None):
        super().__init__(file)
        self._globals = _allowed_globals()
        self._storages = storages

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"Refusing to load global '{module}.{name}' from the checkpoint: a "
                "tensor state dict never needs it, and unpickling it could run code. "
                "Only plain state dicts of tensors can be read."
            ) from None

    def persistent_load(self, pid):
        if self._storages is None:
            raise UnsafePickleError("Unexpected persistent id in a checkpoint header.")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafePickleError(f"Unsupported persistent id in checkpoint: {pid!r:.80}.")
        _, storage_type, key, _location, numel = pid[:5]
        view_metadata = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(
                f"Unsupported storage type in checkpoint: {storage_type!r:.80}."
            )
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise UnsafePickleError(f"Malformed storage reference in checkpoint: {pid!r:.80}.")
        storage = self._storages.get(key)
        if storage is None:
            storage = _Storage(storage_type, key, numel)
            self._storages[key] = storage
        elif storage.storage_type is not storage_type or storage.numel != numel:
            raise UnsafePickleError(f"Storage {key!r} is described two different ways.")
        if view_metadata is not None:
            # torch < 0.4 could pickle a view into a storage as its own storage.
            return _storage_view(storage, view_metadata)
        return storage


def _storage_view(root, view_metadata):
    if not (
        isinstance(view_metadata, tuple)
        and len(view_metadata) == 3
        and all(isinstance(v, int) for v in view_metadata[1:])
    ):
        raise UnsafePickleError(f"Malformed storage view in checkpoint: {view_metadata!r:.80}.")
    _view_key, offset, size = view_metadata
    if offset < 0 or size < 0 or offset + size > root.numel:
        raise UnsafePickleError("Storage view in checkpoint lies outside its storage.")
    view = _Storage(root.storage_type, root.key, size)
    view.root, view.root_offset = root, offset
    return view


def _unpickle(f):
    """Reads one pickle that may name no global and no storage at all."""
    return _RestrictedUnpickler(f).load()


def _checked_tensors(obj, path, max_bytes):
    """Returns the state dict in `obj` as name -> `_Tensor`, every view checked.

    Runs before any storage is read, so that a bad tensor costs nothing.
    """
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # A training checkpoint wrapping the state dict.
    if not isinstance(obj, dict):
        raise TransferkitError(
            f"{path} holds a {type(obj).__name__}, not a state dict (name -> tensor)."
        )
    total = 0
    for name, value in obj.items():
        if not isinstance(value, _Tensor):
            raise TransferkitError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor."
            )
        value.check(name, path)
        # Tensors may share a storage: each is copied out, so a thousand
        # views of one storage cost a thousand copies. Bounded in all.
        total += value.nbytes
        if total > max_bytes:
            raise TransferkitError(
                f"{path}: the tensors up to {name!r:.80} hold {total:,} bytes, over "
                f"max_bytes={max_bytes:,}; pass a larger max_bytes if the checkpoint is that big."
            )
    return obj


class _Budget:
    """The bytes a checkpoint may still make the reader read, out of `max_bytes`."""

    def __init__(self, path, max_bytes):
        self.path = path
        self.max_bytes = max_bytes
        self.used = 0

    def take(self, nbytes, what):
        self.used += nbytes
        if self.used > self.max_bytes:
            raise TransferkitError(
                f"{self.path}: {what} holds {nbytes:,} bytes, which brings the data read to "
                f"{self.used:,}, over max_bytes={self.max_bytes:,}; pass a larger max_bytes "
                "if the checkpoint is that big."
            )


def _read_into(f, array):
    """Fills `array` from the file `f`; returns the bytes read (fewer at its end)."""
    buffer = memoryview(array.reshape(-1).view(np.uint8))
    filled = 0
    while filled < len(buffer):
        count = f.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def _read_member(archive, name, nbytes, budget):
    """Reads the first `nbytes` of a zip member, within `budget`; returns a bytearray.

    The member's declared size counts against the budget before anything is
    inflated. Memory then grows with the data actually inflated, block by
    block, never with what the archive declares: a member may claim any size.
    The rest of the member is read and dropped, so that its CRC is checked,
    and reading past its declared size is an error.
    """
    path = budget.path
    info = archive.getinfo(name)
    if info.file_size < nbytes:
        raise TransferkitError(
            f"{path}: archive member {name!r} holds {info.file_size:,} bytes, "
            f"{nbytes:,} expected: the file is truncated or damaged."
        )
    budget.take(info.file_size, f"archive member {name!r}")
    kept = bytearray()
    seen = 0
    with archive.open(info) as f:
        while block := f.read(_BLOCK):
            seen += len(block)
            # zipfile itself stops at the declared size; this does not rely on it.
            if seen > info.file_size:
                raise TransferkitError(
                    f"{path}: archive member {name!r} inflates past the "
                    f"{info.file_size:,} bytes it declares: the file is damaged or crafted."
                )
            if len(kept) < nbytes:
                kept += block[: nbytes - len(kept)]
    if len(kept) != nbytes:
        raise TransferkitError(f"{path}: archive member {name!r} is truncated.")
    return kept


def _load_legacy(f, path, max_bytes):
    magic = _unpickle(f)
    if magic != _LEGACY_MAGIC:
        raise TransferkitError(f"{path} is not a PyTorch checkpoint (bad magic number).")
    protocol = _unpickle(f)
    if protocol != _LEGACY_PROTOCOL:
        raise TransferkitError(f"{path}: unsupported PyTorch legacy protocol {protocol!r}.")
    sys_info = _unpickle(f)
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    byteorder = "<" if little else ">"

    storages = {}
    tensors = _checked_tensors(_RestrictedUnpickler(f, storages).load(), path, max_bytes)
    keys = _unpickle(f)
    file_size = os.fstat(f.fileno()).st_size
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TransferkitError(f"{path}: malformed list of storage keys.")
    budget = _Budget(path, max_bytes)
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise TransferkitError(f"{path} is truncated (storage {key!r} is missing).")
        (numel,) = struct.unpack("<q", header)
        storage = storages.get(key)
        if storage is None:
            raise TransferkitError(f"{path}: storage {key!r} is not referenced by any tensor.")
        if numel != storage.numel:
            raise TransferkitError(
                f"{path}: storage {key!r} has {numel} elements, the tensors expect {storage.numel}."
            )
        dtype = storage.storage_type.dtype.newbyteorder(byteorder)
        nbytes = numel * dtype.itemsize
        # Checked before allocating: the size comes from the file, the bytes
        # must be in it.
        if nbytes > file_size - f.tell():
            raise TransferkitError(f"{path} is truncated (in storage {key!r}).")
        budget.take(nbytes, f"storage {key!r}")
        array = np.empty(numel, dtype)
        if _read_into(f, array) != nbytes:
            raise TransferkitError(f"{path} is truncated (in storage {key!r}).")
        storage.array = array.astype(dtype.newbyteorder("="), copy=False)
    missing = [k for k, s in storages.items() if s.array is None]
    if missing:
        raise TransferkitError(f"{path}: storages {missing[:3]} have no data.")
    return {name: tensor.to_numpy() for name, tensor in tensors.items()}


def _load_zip(path, max_bytes):
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TransferkitError(f"{path} is a zip file but not a PyTorch checkpoint.")
        prefix = pickles[0][: -len("data.pkl")]
        budget = _Budget(path, max_bytes)
        byteorder = "<"
        if prefix + "byteorder" in names:
            member = prefix + "byteorder"
            size = min(archive.getinfo(member).file_size, 16)  # "little" or "big".
            raw = _read_member(archive, member, size, budget)
            byteorder = "<" if raw == b"little" else ">"
        member = pickles[0]
        raw = _read_member(archive, member, archive.getinfo(member).file_size, budget)
        storages = {}
        obj = _RestrictedUnpickler(io.BytesIO(raw), storages).load()
        del raw
        tensors = _checked_tensors(obj, path, max_bytes)
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TransferkitError(f"{path}: storage {key!r} is missing from the archive.")
            dtype = storage.storage_type.dtype.newbyteorder(byteorder)
            raw = _read_member(archive, member, storage.numel * dtype.itemsize, budget)
            array = np.frombuffer(raw, dtype=dtype)  # Shares the bytearray, writable.
            storage.array = array.astype(dtype.newbyteorder("="), copy=False)
        return {name: tensor.to_numpy() for name, tensor in tensors.items()}


def load_torch_state_dict(path, max_bytes=DEFAULT_MAX_BYTES):
    """Reads a PyTorch state dict file into NumPy arrays, without torch.

    Only plain state dicts (a dict of name -> tensor, possibly wrapped in a
    dict under `"state_dict"`) are read. Any global beyond what those need is
    refused before it is looked up, so a malicious file cannot run code; and
    every size in the file is checked before it is allocated, so a small one
    cannot fill the memory.

    Args:
        path: str or path-like, a file written by `torch.save(state_dict, path)`,
            in the legacy or the zip format.
        max_bytes: int, the most bytes the file's data may take once read
            (the storages, and in a zip archive every member, in all) and
            the returned arrays may hold in all. Defaults to
            `DEFAULT_MAX_BYTES`, 4 GiB.

    Returns:
        dict of str -> `np.ndarray`, in the file's order, each array a fresh
        C-contiguous copy with the tensor's shape and dtype.

    Raises:
        UnsafePickleError: the file asks for a global a state dict never
            needs, or a tensor reaches outside its storage.
        TransferkitError: the file is missing, not a PyTorch state dict, or
            larger than `max_bytes`.

    Example:

    >>> weights = load_torch_state_dict("resnet18.pth")  # doctest: +SKIP
    >>> weights["conv1.weight"].shape  # doctest: +SKIP
    (64, 3, 7, 7)
    """
    path = os.fspath(path)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise TransferkitError(f"max_bytes must be a positive int, got {max_bytes!r}.")
    if not os.path.isfile(path):
        raise TransferkitError(f"No such PyTorch checkpoint: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, max_bytes)
        with open(path, "rb") as f:
            return _load_legacy(f, path, max_bytes)
    except UnsafePickleError as e:
        # Raised from inside the unpickler, which does not know the file.
        if str(e).startswith(path):
            raise
        raise UnsafePickleError(f"{path}: {e}") from None
    except TransferkitError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as e:
        raise TransferkitError(f"{path} is not a readable PyTorch checkpoint: {e}") from None
    except (TypeError, AttributeError, IndexError, KeyError, ValueError, OverflowError) as e:
        # An allowed global called with arguments no torch version writes.
        raise TransferkitError(f"{path} is not a readable PyTorch checkpoint: {e}") from None
    except MemoryError:
        # Only a pickle opcode's own length can still ask for this much: the
        # unpickler allocates it before reading.
        raise TransferkitError(
            f"{path} is not a readable PyTorch checkpoint: it asks for more memory than there is."
        ) from None
