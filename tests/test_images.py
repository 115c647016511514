import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit import TransferkitError
from transferkit.data import (
    ImageFolder,
    check_arrays,
    list_images,
    load_image,
    load_images,
    scan_image_folder,
)

# NumPy and Pillow only: also run on JAX and PyTorch (`-m backends`).
pytestmark = pytest.mark.backends

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
RED, WHITE = (255, 0, 0), (255, 255, 255)


def solid(mode, size, value):
    return Image.new(mode, size, value)


def palette_red(transparent=False):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (3 * 254))
    if transparent:
        image.paste(1, (0, 0, 8, 4))  # top half: index 1, transparent
        image.info["transparency"] = 1
    return image


def save(path, image, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.fixture
def folder(tmp_path):
    """Two classes in every format and colour mode, plus files to pass over."""
    root = tmp_path / "images"
    ants, bees = root / "ants", root / "bees"
    save(ants / "rgb.jpg", solid("RGB", (20, 10), RED), quality=95)
    save(ants / "gray.png", solid("L", (10, 10), 128))
    save(ants / "la.png", solid("LA", (10, 10), (100, 255)))
    save(ants / "palette.gif", palette_red())
    save(ants / "cmyk.jpg", solid("CMYK", (10, 10), (0, 255, 255, 0)), quality=95)
    save(ants / "deep" / "nested.webp", solid("RGB", (10, 10), RED), lossless=True)
    save(ants / "UPPER.PNG", solid("RGB", (10, 10), RED))
    save(bees / "rgba.png", solid("RGBA", (10, 10), (255, 0, 0, 128)))
    save(bees / "i16.tif", Image.fromarray(np.full((10, 10), 32896, np.uint16)))
    save(bees / "bitmap.bmp", solid("RGB", (10, 10), RED))
    save(bees / "one_bit.tiff", solid("1", (10, 10), 1))
    save(bees / "photo.jpeg", solid("RGB", (10, 10), RED))
    # Passed over: a non-image file, hidden files and folders, root-level files.
    (ants / "README.txt").write_text("ants")
    save(ants / ".thumb.png", solid("RGB", (4, 4), RED))
    save(root / ".cache" / "x.png", solid("RGB", (4, 4), RED))
    save(root / "cover.png", solid("RGB", (4, 4), RED))
    return root


def add_corrupt_files(root):
    truncated_jpeg(root / "ants" / "truncated.jpg")
    (root / "bees" / "notes.jpg").write_text("not an image at all")


def names(files, root):
    return [str(Path(f).relative_to(root)) for f in files]


# --- scan_image_folder -----------------------------------------------------

def test_scan_finds_images_by_extension_in_sorted_class_folders(folder):
    found = scan_image_folder(folder)
    assert found.class_names == ["ants", "bees"]
    assert names(found.files, folder) == [
        "ants/UPPER.PNG", "ants/cmyk.jpg", "ants/deep/nested.webp", "ants/gray.png",
        "ants/la.png", "ants/palette.gif", "ants/rgb.jpg",
        "bees/bitmap.bmp", "bees/i16.tif", "bees/one_bit.tiff", "bees/photo.jpeg",
        "bees/rgba.png",
    ]
    assert found.labels.dtype == np.int64
    assert found.labels.tolist() == [0] * 7 + [1] * 5
    assert found.class_counts() == {"ants": 7, "bees": 5}
    assert len(found) == 12 and found.skipped == []
    assert found.root == folder


def test_scan_takes_custom_extensions(folder):
    found = scan_image_folder(folder, extensions=["PNG", ".tif"])
    assert names(found.files, folder) == [
        "ants/UPPER.PNG", "ants/gray.png", "ants/la.png", "bees/i16.tif", "bees/rgba.png",
    ]


def test_corrupt_images_are_skipped_and_named_in_one_warning(folder):
    add_corrupt_files(folder)
    with pytest.warns(UserWarning, match=r"Skipped 2 unreadable") as caught:
        found = scan_image_folder(folder)
    message = str(caught[0].message)
    assert "ants/truncated.jpg (image file is truncated" in message
    assert "bees/notes.jpg (not an image" in message
    assert names([path for path, _ in found.skipped], folder) == [
        "ants/truncated.jpg", "bees/notes.jpg",
    ]
    assert len(found) == 12


def test_a_truncated_jpeg_passes_pillow_verify_so_scanning_decodes(tmp_path):
    path = truncated_jpeg(tmp_path / "t.jpg")
    with Image.open(path) as image:
        image.verify()  # no error: the reason verify() alone is not enough
    with pytest.raises(TransferkitError, match=r"Cannot read image '.*t\.jpg'.*truncated"):
        load_image(path, 8)


def test_strict_scan_raises_naming_the_corrupt_files(folder):
    add_corrupt_files(folder)
    with pytest.raises(TransferkitError, match=r"2 image file\(s\).*do not decode: "
                       r"ants/truncated\.jpg .*bees/notes\.jpg .*strict=False"):
        scan_image_folder(folder, strict=True)


def test_scan_of_a_clean_folder_warns_nothing(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan_image_folder(folder, strict=True)


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda root: None, "does not exist"),
        (lambda root: save(root, solid("RGB", (4, 4), RED), format="PNG"), "is not a folder"),
        (lambda root: (root / "ants").mkdir(parents=True),
         "needs at least two class subfolders (one per class), found 1: 'ants'."),
        (lambda root: save(root / "a.png", solid("RGB", (4, 4), RED)),
         "needs at least two class subfolders (one per class), found 0."),
        (lambda root: [save(root / "ants" / "a.png", solid("RGB", (4, 4), RED)),
                       (root / "wasps").mkdir(),
                       (root / "wasps" / "notes.txt").write_text("")],
         "Class folder 'wasps' in"),
    ],
    ids=["missing", "file", "one-class", "no-class", "empty-class"],
)
def test_scan_errors_say_what_is_wrong(tmp_path, setup, words):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(TransferkitError) as error:
        scan_image_folder(root)
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_a_class_whose_images_all_fail_is_named(tmp_path):
    save(tmp_path / "ants" / "a.png", solid("RGB", (4, 4), RED))
    truncated_jpeg(tmp_path / "bees" / "b.jpg")
    with pytest.raises(TransferkitError, match="Class folder 'bees' .* no readable "
                       r"images: bees/b\.jpg \(image file is truncated"):
        scan_image_folder(tmp_path)


# --- load_image: colour modes, orientation, sizes --------------------------

@pytest.mark.parametrize(
    "name, image, options, expected",
    [
        ("rgb.png", solid("RGB", (6, 6), (10, 20, 30)), {}, (10, 20, 30)),
        ("gray.png", solid("L", (6, 6), 128), {}, (128, 128, 128)),
        ("palette.png", palette_red(), {}, RED),
        ("palette.gif", palette_red(), {}, RED),
        ("la_opaque.png", solid("LA", (6, 6), (100, 255)), {}, (100, 100, 100)),
        ("la_clear.png", solid("LA", (6, 6), (100, 0)), {}, WHITE),
        # 50% red on white: 255 * 128/255 + 255 * 127/255 per channel.
        ("rgba_half.png", solid("RGBA", (6, 6), (255, 0, 0, 128)), {}, (255, 127, 127)),
        ("rgba_clear_black.png", solid("RGBA", (6, 6), (0, 0, 0, 0)), {}, WHITE),
        ("cmyk.tif", solid("CMYK", (6, 6), (0, 255, 255, 0)), {}, RED),
        ("i16.png", Image.fromarray(np.full((6, 6), 32896, np.uint16)), {}, (128, 128, 128)),
        ("i16.tif", Image.fromarray(np.full((6, 6), 65535, np.uint16)), {}, WHITE),
        ("white.tif", solid("1", (6, 6), 1), {}, WHITE),
        ("black.bmp", solid("1", (6, 6), 0), {}, (0, 0, 0)),
        ("rgb.bmp", solid("RGB", (6, 6), RED), {}, RED),
        ("rgb.webp", solid("RGB", (6, 6), RED), {"lossless": True}, RED),
    ],
)
def test_every_colour_mode_loads_as_exact_rgb(tmp_path, name, image, options, expected):
    path = save(tmp_path / name, image, **options)
    pixels = load_image(path, 4)
    assert pixels.shape == (4, 4, 3) and pixels.dtype == np.uint8
    assert np.all(pixels == expected), pixels[0, 0]


def test_transparent_palette_entries_become_white(tmp_path):
    path = save(tmp_path / "p.png", palette_red(transparent=True))
    pixels = load_image(path, 8, crop=None)
    assert np.all(pixels[:4] == WHITE) and np.all(pixels[4:] == RED)


def test_lossy_formats_load_close_to_the_colour(tmp_path):
    jpeg = save(tmp_path / "rgb.jpg", solid("RGB", (16, 16), RED), quality=95)
    cmyk = save(tmp_path / "cmyk.jpg", solid("CMYK", (16, 16), (0, 255, 255, 0)), quality=95)
    for path in (jpeg, cmyk):
        assert np.abs(load_image(path, 8).astype(int) - RED).max() <= 3


def halves(width, height, first, second):
    """An image whose left half is `first` and right half is `second`."""
    image = Image.new("RGB", (width, height), second)
    image.paste(first, (0, 0, width // 2, height))
    return image


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    # Stored 60 wide and 30 tall, red left, blue right; orientation 6 says
    # "rotate 90 degrees clockwise to display": upright it is 30 wide and 60
    # tall, red on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / f"rotated.{suffix}", halves(60, 30, RED, (0, 0, 255)), exif=exif)
    pixels = load_image(path, (60, 30), crop=None).astype(int)
    assert np.abs(pixels[5:25] - RED).max() <= 8
    assert np.abs(pixels[35:55] - (0, 0, 255)).max() <= 8


def test_center_crop_keeps_the_middle_and_none_stretches(tmp_path):
    image = Image.new("RGB", (300, 100), (0, 0, 255))
    image.paste(RED, (0, 0, 100, 100))
    image.paste((0, 255, 0), (100, 0, 200, 100))
    path = save(tmp_path / "thirds.png", image)

    centre = load_image(path, 20)
    assert centre.shape == (20, 20, 3)
    assert np.all(centre[:, 1:-1] == (0, 255, 0))

    stretched = load_image(path, (10, 30), crop=None)
    assert stretched.shape == (10, 30, 3)
    assert np.all(stretched[:, 1:9] == RED)
    assert np.all(stretched[:, 11:19] == (0, 255, 0))
    assert np.all(stretched[:, 21:29] == (0, 0, 255))

    # Not square: (height, width). Covering 10x30 takes the full width.
    wide = load_image(path, (10, 30))
    assert np.array_equal(wide, stretched)


def test_load_images_stacks_in_order(folder):
    files = [folder / "ants" / "gray.png", folder / "bees" / "rgba.png"]
    images = load_images(files, (3, 5))
    assert images.shape == (2, 3, 5, 3) and images.dtype == np.uint8
    assert np.all(images[0] == 128) and np.all(images[1] == (255, 127, 127))
    assert load_images([], 4).shape == (0, 4, 4, 3)


@pytest.mark.parametrize(
    "size, crop, words",
    [
        (0, "center", "Invalid image size 0"),
        ((224,), "center", "Invalid image size (224,)"),
        (True, "center", "Invalid image size True"),
        (22.4, "center", "Invalid image size 22.4"),
        (224, "middle", "Invalid crop 'middle'"),
    ],
)
def test_bad_size_or_crop_is_an_error(folder, size, crop, words):
    with pytest.raises(TransferkitError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_image(folder / "ants" / "gray.png", size, crop=crop)


def test_unreadable_files_at_load_time_are_named(tmp_path):
    (tmp_path / "bad.png").write_text("hello")
    with pytest.raises(TransferkitError, match=r"Cannot read image '.*bad\.png'"):
        load_images([tmp_path / "bad.png"], 4)
    with pytest.raises(TransferkitError, match=r"'.*gone\.png' does not exist"):
        load_image(tmp_path / "gone.png", 4)


# --- ImageFolder: split, subset, load --------------------------------------

def synthetic_folder(counts):
    files, labels = [], []
    for label, count in enumerate(counts):
        files += [Path(f"c{label}/{i:03d}.png") for i in range(count)]
        labels += [label] * count
    return ImageFolder(Path("."), files, np.array(labels, np.int64),
                       [f"c{i}" for i in range(len(counts))])


def test_split_is_stratified_disjoint_and_complete():
    data = synthetic_folder([50, 20, 3])
    train, val = data.split(0.2, seed=0)
    assert val.class_counts() == {"c0": 10, "c1": 4, "c2": 1}
    assert train.class_counts() == {"c0": 40, "c1": 16, "c2": 2}
    assert set(train.files).isdisjoint(val.files)
    assert sorted(train.files + val.files) == sorted(data.files)
    assert train.files == sorted(train.files) and val.files == sorted(val.files)
    for part in (train, val):
        assert all(str(f).startswith(f"c{y}/") for f, y in zip(part.files, part.labels))


def test_split_is_repeatable_for_a_seed_and_differs_across_seeds():
    data = synthetic_folder([40, 40])
    first = data.split(0.25, seed=7)[1].files
    assert data.split(0.25, seed=7)[1].files == first
    assert data.split(0.25, seed=8)[1].files != first


def test_split_keeps_one_image_of_each_class_on_each_side():
    train, val = synthetic_folder([2, 30]).split(0.9, seed=0)
    assert train.class_counts() == {"c0": 1, "c1": 3}
    assert val.class_counts() == {"c0": 1, "c1": 27}
    train, val = synthetic_folder([2, 30]).split(0.01, seed=0)
    assert val.class_counts() == {"c0": 1, "c1": 1}


def test_split_errors():
    with pytest.raises(TransferkitError, match="class 'c1' has 1 image"):
        synthetic_folder([5, 1]).split(0.2)
    for fraction in (0, 1, 1.5, -0.1, "0.2", True, None):
        with pytest.raises(TransferkitError, match="Invalid val_fraction"):
            synthetic_folder([5, 5]).split(fraction)
    with pytest.raises(TransferkitError, match="Invalid seed"):
        synthetic_folder([5, 5]).split(0.2, seed="a")


def test_subset_takes_indices_or_a_mask():
    data = synthetic_folder([3, 2])
    part = data.subset([4, 0])
    assert part.files == [data.files[4], data.files[0]]
    assert part.labels.tolist() == [1, 0] and part.class_names == data.class_names
    assert data.subset(data.labels == 1).class_counts() == {"c0": 0, "c1": 2}
    with pytest.raises(TransferkitError, match="index 5 is out of range for 5 images"):
        data.subset([0, 5])
    with pytest.raises(TransferkitError, match="1-D list of integers"):
        data.subset([[0]])


def test_folder_load_gives_images_and_labels(folder):
    found = scan_image_folder(folder)
    x, y = found.load(6)
    assert x.shape == (12, 6, 6, 3) and x.dtype == np.uint8
    assert np.array_equal(y, found.labels) and y is not found.labels
    assert "12 images" in repr(found) and "['ants', 'bees']" in repr(found)


# --- check_arrays ----------------------------------------------------------

def test_check_arrays_keeps_rgb_and_repeats_gray():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 3)).astype(np.uint8)
    x, y = check_arrays(rgb, [0, 1, 2, 1])
    assert x is rgb and y.dtype == np.int64 and y.tolist() == [0, 1, 2, 1]

    gray = np.arange(4 * 2 * 2, dtype=np.int32).reshape(4, 2, 2)
    for images in (gray, gray[..., None]):
        x, _ = check_arrays(images, np.array([[0], [1], [0], [1]]))
        assert x.shape == (4, 2, 2, 3) and x.dtype == np.uint8
        assert np.array_equal(x[..., 2], gray)

    x, y = check_arrays(np.full((2, 2, 2, 3), 200.0), np.eye(3)[[2, 0]])
    assert x.dtype == np.float32 and y.tolist() == [2, 0]


@pytest.mark.parametrize(
    "x, y, num_classes, words",
    [
        (np.zeros((2, 4, 4, 4)), [0, 1], None, "shape (N, height, width, 3)"),
        (np.zeros((2, 4)), [0, 1], None, "got (2, 4)"),
        (np.zeros((3, 4, 4, 3)), [0, 1], None, "x has 3 images but y has 2 labels"),
        (np.zeros((2, 4, 4, 3)), [0, 2], 2, "Label 2 is out of range for 2 classes"),
        (np.zeros((2, 4, 4, 3)), [0, -1], None, "Label -1 is out of range"),
        (np.zeros((2, 4, 4, 3)), [0, 0], None, "fewer than two classes"),
        (np.zeros((2, 4, 4, 3)), [0, 1.5], None, "whole numbers"),
        (np.zeros((2, 4, 4, 3)), [0, 1], 1, "Invalid num_classes 1"),
        (np.full((2, 4, 4, 3), 0.5), [0, 1], None, "scaled to [0, 1]"),
        (np.full((2, 4, 4, 3), 256.0), [0, 1], None, "within [0, 255], found [256.0, 256.0]"),
        (np.full((2, 4, 4, 3), np.nan), [0, 1], None, "finite"),
        (np.zeros((2, 4, 4, 3), bool), [0, 1], None, "dtype bool"),
        (np.zeros((0, 4, 4, 3)), [], None, "x is empty"),
        (np.zeros((2, 4, 4, 3)), [[0.5, 0.5], [0, 1]], None, "one-hot"),
    ],
)
def test_check_arrays_errors_are_one_line(x, y, num_classes, words):
    with pytest.raises(TransferkitError) as error:
        check_arrays(x, y, num_classes)
    assert words in str(error.value)
    assert "\n" not in str(error.value)


# --- list_images -----------------------------------------------------------

def test_list_images_mixes_files_and_folders(folder):
    single = folder / "bees" / "photo.jpeg"
    files = list_images([single, folder / "ants", str(single)])
    assert names(files, folder) == [
        "bees/photo.jpeg", "ants/UPPER.PNG", "ants/cmyk.jpg", "ants/deep/nested.webp",
        "ants/gray.png", "ants/la.png", "ants/palette.gif", "ants/rgb.jpg",
    ]
    assert list_images(single) == [single]


def test_list_images_errors_name_the_paths(folder):
    with pytest.raises(TransferkitError, match=r"No such file or folder: '.*nope\.jpg', '.*gone'"):
        list_images([folder / "nope.jpg", folder / "ants", folder / "gone"])
    with pytest.raises(TransferkitError, match=r"README\.txt' is not an image file"):
        list_images([folder / "ants" / "README.txt"])
    (folder / "empty").mkdir()
    with pytest.raises(TransferkitError, match="No image files"):
        list_images(folder / "empty")


# --- real photos -----------------------------------------------------------

@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason=f"no data set at {HYMENOPTERA}")
def test_hymenoptera_scans_and_loads():
    train = scan_image_folder(HYMENOPTERA / "train", strict=True)
    assert train.class_names == ["ants", "bees"]
    assert train.class_counts() == {"ants": 124, "bees": 121}
    x, y = train.subset([0, 1, 200]).load(224)
    assert x.shape == (3, 224, 224, 3) and y.tolist() == [0, 0, 1]
    assert 20 < x.mean() < 235 and x.std() > 10  # real photos, not blank
