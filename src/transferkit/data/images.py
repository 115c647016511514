"""Image folders on disk, and images as uint8 RGB arrays in [0, 255].

The layout is the one of `keras.utils.image_dataset_from_directory` and
torchvision's `ImageFolder`: one subfolder per class, class names sorted.

    hymenoptera/train/
      ants/0013035.jpg ...
      bees/1092977343_cb42b38d62.jpg ...

Decisions that a user can rely on:

- Files are images by their extension (`IMAGE_EXTENSIONS`, case-insensitive).
  Other files in class folders (`README.txt`, `labels.csv`, `Thumbs.db`) are
  ignored silently, as Keras and torchvision do; so are hidden files and
  folders (names starting with "."), and files directly in the root.
- Class folders are searched recursively: `ants/field/1.jpg` is an ant.
- A file with an image extension that does not decode (a truncated JPEG, a
  text file renamed `.jpg`) is skipped and named in a warning, or is an
  error with `strict=True`. Scanning decodes every file (a JPEG at 1/8 scale,
  which still reads all of its data): `PIL.Image.verify()` alone lets
  truncated JPEGs through.
- Every colour mode becomes 8-bit RGB. Transparent pixels (RGBA, LA, and
  P, L or RGB with a transparent colour) are composited on white, the way a
  viewer shows them; dropping the alpha channel would expose whatever colour
  the transparent pixels happen to store, often black. 16-bit images (I;16,
  I) are scaled from [0, 65535] to [0, 255]; CMYK is converted with Pillow's
  formula (no ICC profile); 1-bit images become black and white.
- The EXIF orientation tag is applied, so photos come out upright.
  Animated GIF and WebP files give their first frame.
"""

import dataclasses
import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from transferkit.data.splits import stratified_split
from transferkit.errors import TransferkitError
from transferkit.progress import Progress

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
CROPS = ("center", None)

# Antialiased when shrinking: Pillow widens the filter by the scale factor.
_RESAMPLE = Image.Resampling.BILINEAR
_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# A warning names at most this many skipped files; `ImageFolder.skipped`
# has them all.
_NAMES_SHOWN = 20
# Threads that decode images side by side (Pillow releases the GIL while it
# decodes and resizes).
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
# Images decoded per step of `load_images`' progress bar.
_CHUNK = 64


@dataclasses.dataclass(eq=False, repr=False)
class ImageFolder:
    """Labelled image files: what `scan_image_folder` found.

    Attributes:
        root: the folder that was scanned.
        files: the image paths, sorted class by class, then by path.
        labels: `np.int64` array, the class index of each file.
        class_names: the class subfolder names, sorted; label `i` is
            `class_names[i]`.
        skipped: `(path, reason)` for each image file that did not decode.

    Example:

    >>> folder = scan_image_folder("hymenoptera/train")  # doctest: +SKIP
    >>> train, val = folder.split(0.2, seed=0)  # doctest: +SKIP
    >>> x, y = train.load(224)  # doctest: +SKIP
    >>> x.shape, x.dtype, folder.class_names  # doctest: +SKIP
    ((196, 224, 224, 3), dtype('uint8'), ['ants', 'bees'])
    """

    root: Path
    files: list
    labels: np.ndarray
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return (
            f"ImageFolder(root='{self.root}', {len(self)} images, "
            f"class_names={self.class_names}, {len(self.skipped)} skipped)"
        )

    def class_counts(self):
        """The number of images of each class, as `{class_name: count}`."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}

    def subset(self, indices):
        """The images at `indices` (integers, or a boolean mask), same classes.

        The subset keeps `root`, `class_names` and the scan's `skipped` list.
        """
        indices = index_array(indices, len(self), "Subset indices must be")
        bad = indices[(indices < 0) | (indices >= len(self))]
        if bad.size:
            raise TransferkitError(
                f"Subset index {bad[0]} is out of range for {len(self)} "
                f"images; use indices 0 to {len(self) - 1}."
            )
        return ImageFolder(
            root=self.root,
            files=[self.files[i] for i in indices],
            labels=self.labels[indices],
            class_names=list(self.class_names),
            skipped=list(self.skipped),
        )

    def split(self, val_fraction, seed=0):
        """Splits into `(train, val)`, stratified: each class split alike.

        Each class gives `round(count * val_fraction)` images to `val`, at
        least one and never all, so every class is on both sides. Both parts
        keep the sorted file order.

        Args:
            val_fraction: the share of each class for validation, in (0, 1).
            seed: an integer, the same one gives the same split; `None`
                for a different split each call. Defaults to 0.

        Example:

        >>> train, val = folder.split(0.25, seed=1)  # doctest: +SKIP
        >>> train.class_counts(), val.class_counts()  # doctest: +SKIP
        ({'ants': 93, 'bees': 91}, {'ants': 31, 'bees': 30})
        """
        train, val = stratified_split(self.labels, self.class_names, val_fraction, seed,
                                      noun="image")
        return self.subset(train), self.subset(val)

    def load(self, size, *, crop="center", verbose=0):
        """Decodes every image: `(x, y)`, uint8 `(N, H, W, 3)` and int64 `(N,)`.

        Args:
            size: an int for square images, or `(height, width)`.
            crop: `"center"` (default) or `None`, as in `load_image`.
            verbose: 1 shows a progress bar. Defaults to 0.
        """
        x = load_images(self.files, size, crop=crop, verbose=verbose)
        return x, self.labels.copy()


def index_array(indices, length, what):
    """`indices` (integers, or a boolean mask of `length`) as a 1-D int64 array.

    Anything else is an error whose message starts with `what`
    (`"Subset indices must be"`). The range is the caller's to check.
    """
    indices = np.asarray(indices)
    if indices.dtype == bool and indices.shape == (length,):
        indices = np.flatnonzero(indices)
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise TransferkitError(
            f"{what} a 1-D list of integers or a boolean mask of length {length}, got "
            f"shape {indices.shape} of {indices.dtype}."
        )
    return indices.astype(np.int64)


def reading_errors(function):
    """Turns an `OSError` while reading the user's files into one `TransferkitError` line."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except TransferkitError:
            raise
        except OSError as e:
            where = e.filename if e.filename is not None else (args[0] if args else "")
            raise TransferkitError(
                f"Could not read {os.fspath(where) if isinstance(where, os.PathLike) else where}:"
                f" {e.strerror or e}; fix the file or folder (a looping or broken link, a "
                "permission) or remove it."
            ) from None
    return wrapper


@reading_errors
def scan_image_folder(path, *, strict=False, extensions=None):
    """Finds the labelled images in a folder with one subfolder per class.

    Every image file is decoded once, so that a corrupt one is found now and
    not halfway through training.

    Args:
        path: the folder (a `str` or `Path`).
        strict: if `True`, a file that does not decode is an error; if
            `False` (default), it is skipped, listed in `skipped` and named
            in a warning.
        extensions: the file extensions that are images, such as
            `("jpg", "png")`, case-insensitive; defaults to `IMAGE_EXTENSIONS`.

    Returns:
        An `ImageFolder`.

    Example:

    >>> folder = scan_image_folder("hymenoptera/train")  # doctest: +SKIP
    >>> folder.class_names, folder.class_counts()  # doctest: +SKIP
    (['ants', 'bees'], {'ants': 124, 'bees': 121})
    """
    root = check_image_folder(path)
    extensions = checked_extensions(extensions)
    class_names = sorted(
        entry.name for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if len(class_names) < 2:
        found = ": " + ", ".join(f"'{n}'" for n in class_names) if class_names else ""
        raise TransferkitError(
            f"Image folder '{root}' needs at least two class subfolders (one "
            f"per class), found {len(class_names)}{found}."
        )
    files, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        candidates = image_files(root / name, extensions)
        if not candidates:
            raise TransferkitError(
                f"Class folder '{name}' in '{root}' has no image files "
                f"({', '.join(extensions)}); add images or remove the folder."
            )
        readable, bad = sort_out(candidates)
        skipped += bad
        if not readable and not strict:
            raise TransferkitError(
                f"Class folder '{name}' in '{root}' has no readable images: "
                f"{named_files(bad, root)}; replace them or remove the folder."
            )
        files += readable
        labels += [label] * len(readable)
    if skipped:
        names = named_files(skipped, root)
        if strict:
            raise TransferkitError(
                f"{len(skipped)} image file(s) in '{root}' do not decode: "
                f"{names}. Remove or replace them, or pass strict=False to "
                "skip them."
            )
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s) in '{root}': {names}.",
            stacklevel=2,
        )
    return ImageFolder(
        root=root,
        files=files,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=class_names,
        skipped=skipped,
    )


def check_image_folder(path):
    """`path` as a `Path` if it is a folder, else the error `scan_image_folder` gives.

    Reads nothing inside it: a cheap check to make before the long work.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise TransferkitError(f"Image folder '{root}' does not exist.")
    if not root.is_dir():
        text = any(s.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") for s in root.suffixes)
        raise TransferkitError(
            f"'{root}' is not a folder; expected a folder with one subfolder per class."
            + (" For a labelled text file, pick a text backbone (minilm_l6)." if text else "")
        )
    return root


def load_image(path, size, *, crop="center"):
    """Reads one image as a uint8 RGB array of shape `(height, width, 3)`.

    The image is turned upright (EXIF orientation), converted to RGB (see the
    module docstring for each colour mode), then sized:
    `crop="center"` scales it, keeping its aspect ratio, until it covers
    `size`, and cuts the centre (the shorter side fits exactly);
    `crop=None` stretches it to `size`.

    Args:
        path: the image file.
        size: an int for a square, or `(height, width)`.
        crop: `"center"` (default) or `None`.

    Example:

    >>> load_image("ants/0013035.jpg", 224).shape  # doctest: +SKIP
    (224, 224, 3)
    """
    height, width = checked_size(size, crop)
    return _read(Path(path), height, width, crop)


@reading_errors
def load_images(files, size, *, crop="center", verbose=0, workers=None):
    """Reads images into one uint8 array of shape `(N, height, width, 3)`.

    For more images than fit in memory, `ImageFiles`
    (`transferkit.data.stream`) decodes them batch by batch instead.

    Args:
        files: image paths.
        size: an int for squares, or `(height, width)`.
        crop: `"center"` (default) or `None`, as in `load_image`.
        verbose: 1 shows a progress bar. Defaults to 0.
        workers: threads decoding side by side. Defaults to the number of
            CPU cores, at most 8.

    Example:

    >>> load_images(["a.jpg", "b.png"], (160, 240)).shape  # doctest: +SKIP
    (2, 160, 240, 3)
    """
    height, width = checked_size(size, crop)
    files = [Path(f) for f in files]
    check_memory(len(files) * height * width * 3,
                 f"{len(files)} images at {height}x{width}", "lower --image-size")
    images = np.empty((len(files), height, width, 3), dtype=np.uint8)
    progress = None
    if verbose:
        import keras  # here: checking a folder does not need it

        progress = keras.utils.Progbar(len(files), unit_name="image")
    for start in range(0, len(files), _CHUNK):
        chunk = files[start:start + _CHUNK]
        decode_images(chunk, (height, width), crop=crop, workers=workers,
                      out=images[start:start + len(chunk)])
        if progress is not None:
            progress.update(start + len(chunk))
    return images


def decode_images(files, size, *, crop="center", workers=None, out=None):
    """`files` decoded side by side by `workers` threads: `(k, height, width, 3)` uint8.

    `size` is `(height, width)`; `out`, optional, the array to fill.
    """
    height, width = size
    workers = DEFAULT_WORKERS if workers is None else workers
    if out is None:
        out = np.empty((len(files), height, width, 3), np.uint8)

    def read(i):
        out[i] = _read(files[i], height, width, crop)

    if workers == 1 or len(files) < 2:
        for i in range(len(files)):
            read(i)
    else:
        with ThreadPoolExecutor(min(workers, len(files))) as pool:
            list(pool.map(read, range(len(files))))  # list(): raises the first error
    return out


@reading_errors
def list_images(paths, *, extensions=None):
    """The image files among `paths`, searching folders recursively.

    Files named explicitly must have an image extension; in folders, other
    files and hidden ones are passed over. The order is that of `paths`,
    each folder's images sorted; duplicates are dropped.

    Args:
        paths: a path, or a list of files and folders.
        extensions: as in `scan_image_folder`; defaults to `IMAGE_EXTENSIONS`.

    Example:

    >>> list_images(["photos/", "extra/bee.png"])  # doctest: +SKIP
    [PosixPath('photos/a.jpg'), PosixPath('photos/b/c.jpg'), PosixPath('extra/bee.png')]
    """
    extensions = checked_extensions(extensions)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise TransferkitError(
            f"No such file or folder: {', '.join(repr(m) for m in missing)}."
        )
    found = {}
    for path in paths:
        if path.is_dir():
            found.update(dict.fromkeys(image_files(path, extensions)))
        elif path.suffix.lower() in extensions:
            found[path] = None
        else:
            raise TransferkitError(
                f"'{path}' is not an image file: its extension is not one of "
                f"{', '.join(extensions)}."
            )
    if not found:
        raise TransferkitError(
            f"No image files ({', '.join(extensions)}) in "
            f"{', '.join(repr(str(p)) for p in paths)}."
        )
    return list(found)


def check_arrays(x, y, num_classes=None):
    """Checks images and labels of the user's own and returns them cleaned.

    Args:
        x: images, `(N, H, W, 3)` RGB, or grayscale `(N, H, W, 1)` or
            `(N, H, W)` (repeated to 3 channels); values in [0, 255], not
            scaled to [0, 1]. Integer arrays are returned as uint8, floats
            as float32.
        y: class indices `(N,)` or `(N, 1)`, or one-hot `(N, classes)`.
        num_classes: the number of classes; defaults to the one-hot width,
            else the largest label + 1, which must give at least 2.

    Returns:
        `(x, y)`: `x` of shape `(N, H, W, 3)`, `y` int64 of shape `(N,)`.

    Example:

    >>> x, y = check_arrays(np.zeros((4, 28, 28), "uint8"), [0, 1, 1, 0])
    >>> x.shape, y.dtype
    ((4, 28, 28, 3), dtype('int64'))
    """
    x = _check_images(np.asarray(x))
    y, num_classes = _check_labels(np.asarray(y), num_classes)
    if len(x) != len(y):
        raise TransferkitError(
            f"x has {len(x)} images but y has {len(y)} labels; they must match."
        )
    return x, y


def _check_images(x):
    if x.dtype.kind not in "uif":
        raise TransferkitError(
            f"Images must be numbers, got dtype {x.dtype}; pass uint8 or float "
            "RGB values in [0, 255]."
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise TransferkitError(
            f"Images must have shape (N, height, width, 3), or (N, height, "
            f"width, 1) or (N, height, width) for grayscale, got {x.shape}."
        )
    if len(x) == 0:
        raise TransferkitError("No images: x is empty.")
    low, high = x.min(), x.max()
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise TransferkitError(
            f"Image values must be finite and within [0, 255], found "
            f"[{low}, {high}]; pass raw RGB values."
        )
    if x.dtype.kind == "f" and 0 < high <= 1:
        raise TransferkitError(
            f"Images look scaled to [0, 1] (largest value {high}); pass raw "
            "values in [0, 255] (x * 255): models apply their own preprocessing."
        )
    x = x.astype(np.uint8 if x.dtype.kind in "iu" else np.float32, copy=False)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _check_labels(y, num_classes):
    if y.ndim == 2 and y.shape[1] > 1:
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            raise TransferkitError(
                f"Labels of shape {y.shape} must be one-hot (a single 1 per "
                "row), or pass class indices of shape (N,)."
            )
        num_classes = y.shape[1] if num_classes is None else num_classes
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "uif":
        raise TransferkitError(
            f"Labels must be class indices of shape (N,) or one-hot (N, "
            f"classes), got shape {y.shape} of {y.dtype}."
        )
    if y.size and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise TransferkitError("Labels must be whole numbers (class indices 0, 1, ...).")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise TransferkitError(
            f"Label {y.min()} is out of range; labels are class indices 0, 1, ..."
        )
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
        if num_classes < 2:
            raise TransferkitError(
                "Labels name fewer than two classes; a classifier needs at "
                "least 2 (or pass num_classes)."
            )
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 2:
        raise TransferkitError(
            f"Invalid num_classes {num_classes!r}: use an integer >= 2."
        )
    bad = y[(y < 0) | (y >= num_classes)]
    if bad.size:
        raise TransferkitError(
            f"Label {bad[0]} is out of range for {num_classes} classes; labels "
            f"must be 0 to {num_classes - 1}."
        )
    return y, num_classes


def _read(path, height, width, crop):
    try:
        with Image.open(path) as image:
            # JPEGs decode at a reduced scale (1/2 .. 1/8) when that still
            # covers the output: much faster for large photos. A square of
            # the larger side covers it in either orientation.
            image.draft(None, (max(height, width),) * 2)
            image = _to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise TransferkitError(f"Image file '{path}' does not exist.") from None
    except Exception as error:  # Corrupt files raise all kinds of errors.
        raise TransferkitError(
            f"Cannot read image '{path}': {_reason(error)}; remove or replace it."
        ) from None
    box = _center_box(image.size, height, width) if crop == "center" else None
    resized = image.resize((width, height), _RESAMPLE, box=box)
    return np.asarray(resized, dtype=np.uint8)


def _to_rgb(image):
    mode = image.mode
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I"):
        # Pillow clips 16-bit values to [0, 255]; scale them instead.
        values = np.asarray(image, dtype=np.int64).clip(0, 65535)
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _center_box(source_size, height, width):
    """The centred region of the source with the output's aspect ratio."""
    source_width, source_height = source_size
    if source_width * height > source_height * width:  # wider: trim the sides
        crop_width = source_height * width / height
        left = (source_width - crop_width) / 2
        return (left, 0, source_width - left, source_height)
    crop_height = source_width * height / width
    top = (source_height - crop_height) / 2
    return (0, top, source_width, source_height - top)


def sort_out(files):
    """`(readable files, [(file, reason), ...] for the others)`."""
    readable, bad, reasons = [], [], []
    with ThreadPoolExecutor(DEFAULT_WORKERS) as pool, \
            Progress(len(files), "Checking image files", unit="files") as progress:
        for reason in pool.map(_unreadable, files):
            reasons.append(reason)
            progress.update()
    for file, reason in zip(files, reasons):
        if reason is None:
            readable.append(file)
        else:
            bad.append((file, reason))
    return readable, bad


def _unreadable(path):
    """`None` if the file decodes, else the reason why not."""
    try:
        with Image.open(path) as image:
            # The 1/8 scale of a JPEG still reads every byte of its data.
            image.draft(None, (1, 1))
            image.load()
    except Exception as error:  # Corrupt files raise all kinds of errors.
        return _reason(error)
    return None


def _reason(error):
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image Pillow can identify"
    return str(error) or type(error).__name__


def named_files(pairs, root):
    names = [f"{_relative(path, root)} ({reason})" for path, reason in pairs]
    if len(names) > _NAMES_SHOWN:
        names = names[:_NAMES_SHOWN] + [f"and {len(names) - _NAMES_SHOWN} more"]
    return ", ".join(names)


def _relative(path, root):
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def image_files(folder, extensions):
    found = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = [s for s in subfolders if not s.startswith(".")]
        found += [
            Path(directory, name) for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions
        ]
    return sorted(found)


def checked_extensions(extensions):
    if extensions is None:
        return IMAGE_EXTENSIONS
    if isinstance(extensions, str):
        extensions = [extensions]
    cleaned = []
    for extension in extensions:
        if not isinstance(extension, str) or not extension.strip(". "):
            raise TransferkitError(
                f"Invalid image extension {extension!r}: use names such as 'jpg' or '.png'."
            )
        cleaned.append("." + extension.strip(". ").lower())
    return tuple(sorted(set(cleaned)))


def checked_size(size, crop="center"):
    """`size` as `(height, width)`, after checking it and `crop`."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in pair)
    ):
        raise TransferkitError(
            f"Invalid image size {size!r}: use a positive int such as 224, or "
            "(height, width) such as (224, 320)."
        )
    _check_crop(crop)
    return int(pair[0]), int(pair[1])


def _check_crop(crop):
    if crop not in CROPS:
        raise TransferkitError(
            f"Invalid crop {crop!r}: use 'center' (keep the aspect ratio, cut "
            "the centre) or None (stretch to the size)."
        )


def available_memory():
    """Bytes of memory available to this process now, or `None` if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needed, what, advice):
    """Fails with one line, before allocating, if `needed` bytes cannot fit in memory.

    Args:
        needed: the bytes about to be allocated.
        what: what they hold, for the message (`"245 images at 224x224"`).
        advice: what to do instead (`"lower --image-size"`).

    Example:

    >>> check_memory(10**15, "1 image", "lower --image-size")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    transferkit.errors.TransferkitError: 1 image need ... GiB of memory and ...
    """
    available = available_memory()
    if available is not None and needed > available:
        raise TransferkitError(
            f"{what} need {needed / 2**30:,.1f} GiB of memory and {available / 2**30:,.1f} GiB "
            f"are available; {advice}."
        )
