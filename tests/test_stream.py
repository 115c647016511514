"""Streamed images (`transferkit.data.stream`): the array `load_images` gives, decoded on demand.

Every consumer of an image array takes an `ImageFiles` instead: the values
must be those of the decoded array, and training on it must give the same
weights as training on the array.
"""

import keras
import numpy as np
import pytest
from helpers import images, make_folder, tiny_model
from PIL import Image

from transferkit.data import images as images_module
from transferkit.data.images import load_images, scan_image_folder
from transferkit.data.stream import Batches, ImageFiles, read_ahead
from transferkit.errors import TransferkitError
from transferkit.training import resume
from transferkit.training.features import (
    FeatureCache,
    extract_features,
    feature_extractor,
)
from transferkit.training.recipe import FineTuner, Phase

N = 40


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """`(files, x, y)`: N lossless 12x12 images on disk and the same pixels in memory."""
    root = tmp_path_factory.mktemp("pngs")
    x, y = images(N)
    files = []
    for i, pixels in enumerate(x):
        files.append(root / f"{i:03d}.png")
        Image.fromarray(pixels).save(files[-1])
    return files, x, y


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = scan_image_folder(make_folder(tmp_path_factory.mktemp("photos") / "data", n=7))
    return folder.files


@pytest.mark.parametrize("workers", [1, 3])
def test_indexing_decodes_what_load_images_decodes(photos, workers):
    x = ImageFiles(photos, (20, 24), workers=workers)
    whole = load_images(photos, (20, 24))
    assert x.shape == whole.shape and x.dtype == whole.dtype and len(x) == len(whole)
    picks = np.array([3, 0, 13, 3])
    mask = np.arange(len(whole)) % 3 == 0
    for key in (0, -1, slice(2, 9), slice(None, None, 4), slice(50, 60), picks, [1, 2],
                mask, np.array([], int)):
        np.testing.assert_array_equal(x[key], whole[key], err_msg=repr(key))
    np.testing.assert_array_equal(np.asarray(x), whole)
    np.testing.assert_array_equal(x.subset(picks)[:], whole[picks])
    np.testing.assert_array_equal(x.load(), whole)


def test_nothing_is_decoded_until_indexed(photos, monkeypatch):
    monkeypatch.setattr(images_module, "_read", _refuse)
    x = ImageFiles(photos, 16).subset([1, 2])
    assert x.shape == (2, 16, 16, 3) and "2 images at 16x16" in repr(x)
    with pytest.raises(AssertionError, match="decoded"):
        x[0]


def _refuse(*args, **kwargs):
    raise AssertionError("decoded")


@pytest.mark.parametrize("key, error, message", [
    (lambda n: n, IndexError, "index 14 is out of range for 14 images"),
    (lambda n: [0, -n - 1], IndexError, "index -15 is out of range"),
    (lambda n: np.zeros((2, 2), int), TransferkitError, r"got shape \(2, 2\) of int64"),
    (lambda n: [0.5], TransferkitError, "of float64"),
])
def test_bad_indices_are_named(photos, key, error, message):
    with pytest.raises(error, match=message):
        ImageFiles(photos, 16)[key(len(photos))]


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "workers must be an int >= 1, got 0"),
    ({"size": 0}, "Invalid image size 0"),
    ({"crop": "top"}, "Invalid crop 'top'"),
])
def test_arguments_are_checked(photos, kwargs, message):
    with pytest.raises(TransferkitError, match=message):
        ImageFiles(photos, **{"size": 16, **kwargs})
    with pytest.raises(TransferkitError, match="a list of image paths, not one path"):
        ImageFiles(photos[0], 16)


def test_a_corrupt_file_is_named_when_decoded(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    x = ImageFiles([*photos[:5], broken], 16, workers=4)
    np.testing.assert_array_equal(x[:5], load_images(photos[:5], 16))
    with pytest.raises(TransferkitError, match=r"Cannot read image '.*broken.jpg': not an image"):
        x[2:6]


@pytest.mark.parametrize("streamed", [True, False])
def test_read_ahead_yields_every_batch_in_order(pngs, streamed):
    files, x, _ = pngs
    source = ImageFiles(files, 12) if streamed else x
    got = list(read_ahead(source, 16))
    assert [start for start, _ in got] == [0, 16, 32]
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in got]), x)


def test_read_ahead_raises_a_decoding_error_at_its_batch(pngs, tmp_path):
    files, x, _ = pngs
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    reading = read_ahead(ImageFiles([*files[:16], broken], 12), 16)
    start, first = next(reading)  # the second batch, decoding meanwhile, fails
    np.testing.assert_array_equal(first, x[:16])
    with pytest.raises(TransferkitError, match="broken.png"):
        next(reading)


def test_batches_serve_in_order_with_a_smaller_last_batch(pngs):
    files, x, y = pngs
    data = Batches(ImageFiles(files, 12), y, batch_size=16)
    assert data.num_batches == 3 and data.workers == 2
    served = [data[i] for i in range(3)]
    assert [len(b[0]) for b in served] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in served]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in served]), y)
    np.testing.assert_array_equal(Batches(x, batch_size=32)[1], x[32:])
    with pytest.raises(TransferkitError, match="x has 40 inputs and y has 39 targets"):
        Batches(x, y[:-1])


def test_extraction_and_the_cache_key_stream_from_files(pngs, tmp_path):
    files, x, _ = pngs
    streamed = ImageFiles(files, 12)
    np.testing.assert_array_equal(streamed[:], x)  # lossless: the same pixels
    extractor = feature_extractor(tiny_model())
    features = extract_features(extractor, streamed, batch_size=7, path=tmp_path / "f.npy")
    np.testing.assert_array_equal(features, extract_features(extractor, x, batch_size=7))
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key(extractor, streamed)
    assert key == cache.key(extractor, ImageFiles(files, 12))
    assert key != cache.key(extractor, ImageFiles(files, 12, crop=None))
    assert key != cache.key(extractor, ImageFiles(files[:-1], 12))


def test_training_on_streamed_images_equals_training_on_the_array(pngs):
    """The plain and the cached path; epochs seeded as `train` seeds them."""
    files, x, y = pngs
    weights = []
    for inputs, val in ((x[:30], x[30:]), (ImageFiles(files[:30], 12),
                                           ImageFiles(files[30:], 12))):
        model = tiny_model(seed=0)
        tuner = FineTuner([Phase(2, 1e-2, "none"), Phase(2, 1e-2, "all")], batch_size=8,
                          seed=3, verbose=0, partial=resume.PartialRun(None, None, seed=3))
        tuner.fit(model, inputs, y[:30], validation_data=(val, y[30:]))
        weights.append((model.get_weights(), tuner.history_))
    (array_weights, array_history), (streamed_weights, streamed_history) = weights
    for a, b in zip(array_weights, streamed_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    for key, values in array_history.items():
        np.testing.assert_allclose(streamed_history[key], values, rtol=0, atol=1e-6,
                                   err_msg=key)


def test_a_finetuner_without_a_checkpoint_trains_on_streamed_images(pngs, capsys):
    files, _, y = pngs
    model = tiny_model(seed=0)
    tuner = FineTuner([Phase(1, 1e-2, "none"), Phase(1, 1e-2, "all")], batch_size=8, seed=0,
                      verbose=1)
    tuner.fit(model, ImageFiles(files[:30], 12), y[:30],
              validation_data=(ImageFiles(files[30:], 12), y[30:]))
    assert len(tuner.history_["val_loss"]) == 2
    assert all(np.isfinite(v) for v in tuner.history_["val_loss"])
    assert "training the head on cached features" in capsys.readouterr().out
    assert keras.ops.convert_to_numpy(model.predict(Batches(ImageFiles(files, 12)),
                                                    verbose=0)).shape == (N, 3)
