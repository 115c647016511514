"""Images labelled by a table: one class, several labels, or a number per file.

A CSV (or TSV, by its `.tsv` extension) with a header row names each image,
relative to the image folder, and its target:

    file,label                 file,ant,bee,outdoors      file,labels           file,brightness
    ants/1.jpg,ant             1.jpg,1,0,1                1.jpg,ant;outdoors    1.jpg,131.5
    2.jpg,bee                  2.jpg,0,1,0                2.jpg,bee             2.jpg,88.0

The file column is the one named `file`, `filename`, `path` or `image`
(else the first); the label columns are the others (or `label_columns`).
What the labels are (`task="auto"`):

- several columns, each 0/1: **multi-label**, one label per column;
- one column with a `;` in any row: **multi-label**, the labels listed
  (an empty cell: none of them);
- one numeric column with a fraction in some row: **regression**;
- otherwise (names, or whole numbers): **classes**, one per image. Whole
  numbers are taken as class names; `task="regression"` reads them as
  numbers.

Every mismatch between the table and the folder is an error naming the
row: a file that is not in the folder, an image in the folder that no row
lists, a bad value, a file listed twice. With `skip_bad_rows=True` such
rows (and unlisted images) are left out and counted in one warning.
"""

import csv
import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np

from transferkit.data.images import (
    ImageFolder,
    check_image_folder,
    checked_extensions,
    image_files,
    index_array,
    named_files,
    reading_errors,
    sort_out,
)
from transferkit.errors import TransferkitError

TASKS = ("auto", "classes", "multilabel", "regression")
FILE_COLUMNS = ("file", "filename", "file_name", "path", "image", "image_path")
# A warning names at most this many bad rows; `ImageTable.bad_rows` has them all.
_ROWS_SHOWN = 5


@dataclasses.dataclass(eq=False, repr=False)
class ImageTable:
    """Images with several labels each, or a number each: what `read_label_table` found.

    (A table of one class per image gives an `ImageFolder`.)

    Attributes:
        root: the image folder.
        files: the image paths, in the table's row order.
        labels: the targets: `(n, k)` float32 0/1 for `"multilabel"`, `(n,)`
            float32 for `"regression"`.
        class_names: the label names (`"multilabel"`), or the target
            column's name alone (`"regression"`).
        task: `"multilabel"` or `"regression"`.
        skipped: `(path, reason)` for each listed image that did not decode.
        bad_rows: `(row, reason)` for each row left out by `skip_bad_rows`
            (row 1 is the header).

    Example:

    >>> table = read_label_table("photos", "photos/labels.csv")  # doctest: +SKIP
    >>> table.task, table.class_names, table.labels.shape  # doctest: +SKIP
    ('multilabel', ['ant', 'bee', 'outdoors'], (245, 3))
    """

    root: Path
    files: list
    labels: np.ndarray
    class_names: list
    task: str
    skipped: list = dataclasses.field(default_factory=list)
    bad_rows: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return (f"ImageTable(root='{self.root}', {len(self)} images, task={self.task!r}, "
                f"class_names={self.class_names})")

    def label_counts(self):
        """`{label: images with it}` (multi-label), or `{}` (regression)."""
        if self.task != "multilabel":
            return {}
        return {name: int(n) for name, n in zip(self.class_names, self.labels.sum(axis=0))}

    def subset(self, indices):
        """The images at `indices` (integers, or a boolean mask), same labels."""
        indices = index_array(indices, len(self), "Subset indices must be")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise TransferkitError(f"Subset indices must be in [0, {len(self)}).")
        return dataclasses.replace(self, files=[self.files[i] for i in indices],
                                   labels=self.labels[indices])

    def split(self, val_fraction, seed=0):
        """`(train, val)`: iterative stratification for labels, quantile bins for numbers.

        Each label's images (or each tenth of the target's range) go to
        validation in about `val_fraction` (`transferkit.data.splits`).
        """
        from transferkit.data import splits

        if self.task == "multilabel":
            train, val = splits.iterative_split(self.labels, val_fraction, seed, noun="image",
                                                label_names=self.class_names)
        else:
            train, val = splits.binned_split(self.labels, val_fraction, seed)
        return self.subset(train), self.subset(val)


@reading_errors
def read_label_table(images, table, *, task="auto", file_column=None, label_columns=None,
                     skip_bad_rows=False, strict=False, extensions=None):
    """Reads a table of image files and their labels; checks it against the folder.

    Every listed image is decoded once (as `scan_image_folder` does), so a
    corrupt file is found now.

    Args:
        images: the folder the table's file names are relative to.
        table: the CSV or TSV file (with a header row).
        task: `"auto"` (default: decided from the values, module docstring),
            `"classes"`, `"multilabel"` or `"regression"`.
        file_column: the file column's name. Defaults to the first of
            `file`, `filename`, `path`, `image` present, else the first column.
        label_columns: the label columns' names (a list, or a comma-separated
            string). Defaults to every column but the file column.
        skip_bad_rows: leave out bad rows and unlisted images (counted in a
            warning) instead of stopping at the first. Defaults to `False`.
        strict: an image that does not decode is an error instead of skipped.
        extensions: the image extensions, as in `scan_image_folder`.

    Returns:
        An `ImageFolder` (task `"classes"`: `labels` are class indices into
        the sorted `class_names`) or an `ImageTable`.

    Example:

    >>> folder = read_label_table("photos", "labels.csv")  # doctest: +SKIP
    """
    root = check_image_folder(images)
    path = check_label_table(table)
    if task not in TASKS:
        raise TransferkitError(f"Unknown task {task!r}; use one of {', '.join(TASKS)}.")
    header, rows = _read_rows(path)
    file_index, label_indices = _columns(path, header, file_column, label_columns)
    bad = []  # (row, reason)

    def reject(row, reason):
        if not skip_bad_rows:
            raise TransferkitError(f"{path.name} row {row}: {reason}; fix the row or pass "
                                   "--skip-bad-rows (skip_bad_rows=True) to leave it out.")
        bad.append((row, reason))

    # The files: each row's file must be an image in the folder, listed once.
    on_disk = {p.relative_to(root).as_posix(): p for p in image_files(root, checked_extensions(
        extensions))}
    seen, kept = {}, []  # relative name -> row; (row, path, values)
    for row, cells in rows:
        if len(cells) != len(header):
            reject(row, f"{len(cells)} cells for {len(header)} columns")
            continue
        name = Path(cells[file_index].strip()).as_posix()
        if name in seen:
            reject(row, f"'{name}' is listed twice (also row {seen[name]})")
            continue
        seen[name] = row
        if name not in on_disk:
            reject(row, f"'{name}' is not an image file in {root}" if not name or not (
                root / name).exists() else f"'{name}' is not an image file "
                f"({', '.join(checked_extensions(extensions))})")
            continue
        kept.append((row, on_disk[name], [cells[i].strip() for i in label_indices]))
    unlisted = sorted(set(on_disk) - set(seen))
    if unlisted and not skip_bad_rows:
        raise TransferkitError(
            f"{len(unlisted)} image(s) in {root} are in no row of {path.name} (first: "
            f"'{unlisted[0]}'); add rows for them, or pass --skip-bad-rows "
            "(skip_bad_rows=True) to leave them out.")
    names = [header[i] for i in label_indices]
    task = _decided_task(task, names, [values for _, _, values in kept], path)
    targets, class_names, kept = _targets(task, names, kept, reject)
    if not kept:
        raise TransferkitError(f"{path.name} has no usable rows for images in {root}.")
    files = [file for _, file, _ in kept]
    readable, skipped = sort_out(files)
    if skipped:
        listed = named_files(skipped, root)
        if strict:
            raise TransferkitError(f"{len(skipped)} image file(s) in '{root}' do not decode: "
                                   f"{listed}. Remove or replace them, or pass strict=False "
                                   "to skip them.")
        warnings.warn(f"Skipped {len(skipped)} unreadable image file(s) in '{root}': "
                      f"{listed}.", stacklevel=2)
        unreadable = {f for f, _ in skipped}
        keep = np.array([f not in unreadable for f in files])
        files, targets = readable, targets[keep]
    if bad or unlisted:
        shown = "; ".join(f"row {r}: {why}" for r, why in bad[:_ROWS_SHOWN])
        more = f" and {len(bad) - _ROWS_SHOWN} more" if len(bad) > _ROWS_SHOWN else ""
        warnings.warn(
            f"{path.name}: left out {len(bad)} bad row(s)" + (f" ({shown}{more})" if bad else "")
            + f" and {len(unlisted)} image(s) no row lists"
            + (f" (first: '{unlisted[0]}')" if unlisted else "") + ".", stacklevel=2)
    if task == "classes":
        return ImageFolder(root=root, files=files, labels=targets, class_names=class_names,
                           skipped=skipped)
    return ImageTable(root=root, files=files, labels=targets, class_names=class_names,
                      task=task, skipped=skipped,
                      bad_rows=bad + [(None, f"'{u}' is in no row") for u in unlisted])


def check_label_table(table):
    """`table` as a `Path` if it is a readable file; reads nothing else. A cheap early check."""
    path = Path(table).expanduser()
    if not path.exists():
        raise TransferkitError(f"Label table '{path}' does not exist.")
    if not path.is_file():
        raise TransferkitError(f"Label table '{path}' is not a file; expected a CSV of file "
                               "names and labels.")
    return path


def _read_rows(path):
    """`(header, [(row number, cells), ...])`; blank lines skipped, row 1 the header."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f, delimiter=delimiter))
    except UnicodeDecodeError:
        raise TransferkitError(f"{path} is not UTF-8 text; save it as a UTF-8 CSV.") from None
    except csv.Error as e:
        raise TransferkitError(f"{path} is not a valid CSV: {e}.") from None
    numbered = [(i + 1, cells) for i, cells in enumerate(lines) if any(c.strip() for c in cells)]
    if not numbered:
        raise TransferkitError(f"{path} is empty; expected a header row (file,label) and a "
                               "row per image.")
    (_, header), rows = numbered[0], numbered[1:]
    header = [h.strip() for h in header]
    if len(header) < 2:
        raise TransferkitError(f"{path} has {len(header)} column; expected a file column and "
                               "at least one label column, separated by "
                               f"{'tabs' if delimiter == chr(9) else 'commas'}.")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated or "" in header:
        raise TransferkitError(f"{path}'s header needs a distinct name for every column; "
                               f"got {header}.")
    if not rows:
        raise TransferkitError(f"{path} has a header and no rows; add a row per image.")
    return header, rows


def _columns(path, header, file_column, label_columns):
    """The file column's index and the label columns' indices."""
    def index(name, what):
        if name not in header:
            raise TransferkitError(f"{path.name} has no column {name!r} ({what}); its columns "
                                   f"are {', '.join(header)}.")
        return header.index(name)

    if file_column is not None:
        file_index = index(file_column, "the file column")
    else:
        found = [i for i, h in enumerate(header) if h.lower() in FILE_COLUMNS]
        file_index = found[0] if found else 0
    if label_columns is None:
        label_indices = [i for i in range(len(header)) if i != file_index]
    else:
        names = label_columns.split(",") if isinstance(label_columns, str) else label_columns
        label_indices = [index(str(n).strip(), "a label column") for n in names]
        if not label_indices or file_index in label_indices:
            raise TransferkitError(f"label_columns must name columns other than the file "
                                   f"column {header[file_index]!r}; got {label_columns!r}.")
    return file_index, label_indices


def _decided_task(task, names, values, path):
    if task != "auto":
        if task != "multilabel" and len(names) > 1:
            raise TransferkitError(
                f"{path.name} has {len(names)} label columns ({', '.join(names)}); a {task} "
                "target is one column: name it with --label-columns, or use --task multilabel.")
        return task
    if len(names) > 1:
        return "multilabel"
    cells = [v[0] for v in values]
    if any(";" in c for c in cells):
        return "multilabel"
    numbers = [_number(c) for c in cells]
    if cells and all(n is not None for n in numbers) \
            and any(not float(n).is_integer() for n in numbers):
        return "regression"
    return "classes"


def _targets(task, names, kept, reject):
    """`(targets, class names, the rows kept)` for `task`; bad values go to `reject`."""
    good = []
    if task == "regression":
        for row, file, (cell,) in kept:
            value = _number(cell)
            if value is None:
                reject(row, f"{names[0]} {cell!r} is not a number")
            else:
                good.append((row, file, value))
        return np.array([v for *_, v in good], dtype="float32"), [names[0]], good
    if task == "classes":
        for row, file, (cell,) in kept:
            if not cell:
                reject(row, f"no {names[0]}")
            else:
                good.append((row, file, cell))
        class_names = sorted({v for *_, v in good})
        if len(class_names) < 2:
            raise TransferkitError(f"The table has {len(class_names)} class ({class_names}); "
                                   "classification needs at least two.")
        index = {name: i for i, name in enumerate(class_names)}
        return np.array([index[v] for *_, v in good], dtype=np.int64), class_names, good
    if len(names) > 1:  # a 0/1 column per label
        for row, file, cells in kept:
            wrong = [(n, c) for n, c in zip(names, cells) if c not in ("0", "1")]
            if wrong:
                reject(row, f"{wrong[0][0]} is {wrong[0][1]!r}, expected 0 or 1")
            else:
                good.append((row, file, [int(c) for c in cells]))
        label_names = list(names)
        targets = np.array([v for *_, v in good], dtype="float32").reshape(-1, len(names))
    else:  # one column listing the labels
        for row, file, (cell,) in kept:
            listed = [part.strip() for part in cell.split(";") if part.strip()]
            if len(set(listed)) != len(listed):
                reject(row, f"a label is listed twice in {cell!r}")
            else:
                good.append((row, file, listed))
        label_names = sorted({label for *_, listed in good for label in listed})
        index = {name: i for i, name in enumerate(label_names)}
        targets = np.zeros((len(good), len(label_names)), dtype="float32")
        for i, (*_, listed) in enumerate(good):
            targets[i, [index[label] for label in listed]] = 1
    if len(label_names) < 2:
        raise TransferkitError(f"The table has {len(label_names)} label ({label_names}); "
                               "multi-label needs at least two.")
    return targets, label_names, good


def _number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def table_task(table):
    """`"classes"` for an `ImageFolder`, else the `ImageTable`'s task."""
    return getattr(table, "task", "classes")

