"""Labelled text files, and texts as multi-hot bag-of-words vectors.

A labelled text file has one example a row, with a text column and a label
column (other columns are ignored):

- JSON Lines (`.jsonl`, `.ndjson`): one JSON object a line, such as
  `{"id": "train/neg/0_3.txt", "label": 0, "text": "Story of a man ..."}`;
  blank lines are skipped.
- CSV (`.csv`): a header row naming the columns, then one row an example;
  fields with commas or line breaks are quoted. Rows that span several lines
  are read and named in a warning: one unmatched quote looks the same.
- TSV (`.tsv`): the same, separated by tabs, one row a line, read as it is:
  a quote is a character of the text, never the start of a quoted field (a
  stray `"` in a review would otherwise swallow the lines after it).

Either may be gzip-compressed (`reviews.jsonl.gz`); files are UTF-8.

Labels are integers (class indices 0, 1, ..., kept as they are) or strings
(class names, numbered in sorted order, like image class folders). In a CSV
file every field is a string: a label column whose every value is an integer
gives integer labels, any other gives class names.

`MultiHot` turns texts into the vectors of Deep Learning with Python, ch. 3-4:
one column per word of a vocabulary of the most frequent words, 1 where the
text has the word. It is a small NumPy implementation rather than
`keras.layers.TextVectorization(output_mode="multi_hot")`, so that it runs on
every Keras backend without TensorFlow strings, splits words at punctuation
instead of gluing them together ("well-made" is "well" "made", not
"wellmade"), drops HTML line breaks (`<br />`, which are in most IMDB reviews
and would otherwise be the word "br"), breaks frequency ties alphabetically,
and spends no column on an out-of-vocabulary token.
"""

import collections
import csv
import dataclasses
import functools
import gzip
import json
import re
import warnings
import zlib
from pathlib import Path

import numpy as np

from transferkit.data.splits import stratified_split
from transferkit.errors import TransferkitError

TEXT_EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".tsv")
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", None)

_JSON_LINES = (".jsonl", ".ndjson")
# HTML line breaks: <br>, <br/>, <br />, in any case.
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Punctuation (anything but letters, digits and whitespace, and the
# underscore), except an apostrophe between two letters or digits, which
# stays in its word: "don't", "it's", "90's".
_PUNCTUATION = re.compile(r"[^\w\s']|_|(?<![^\W_])'|'(?![^\W_])")
# Texts are turned into rows of the output this many at a time, so that the
# token lists of only one chunk are held in memory.
_CHUNK = 1024
# An error names at most this many columns or values.
_NAMES_SHOWN = 10


@dataclasses.dataclass(eq=False, repr=False)
class TextFile:
    """Labelled texts: what `read_text_file` read.

    Attributes:
        path: the file that was read.
        texts: the texts, a list of `str`, in the file's order.
        labels: `np.int64` array, the class index of each text.
        class_names: label `i` is `class_names[i]`.
        skipped: `(line, reason)` for each malformed row skipped
            (`skip_bad_rows=True`).
        lines: the line of the file each text starts on (1 is the first).

    Example:

    >>> data = read_text_file("imdb/imdb_train.jsonl.gz")  # doctest: +SKIP
    >>> train, val = data.split(0.2, seed=0)  # doctest: +SKIP
    >>> len(train), len(val), data.class_names  # doctest: +SKIP
    (20000, 5000, ['0', '1'])
    """

    path: Path
    texts: list
    labels: np.ndarray
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)
    lines: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.texts)

    def __repr__(self):
        return (f"TextFile(path='{self.path}', {len(self)} texts, "
                f"class_names={self.class_names}, {len(self.skipped)} skipped)")

    def class_counts(self):
        """The number of texts of each class, as `{class_name: count}`."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}

    def subset(self, indices):
        """The texts at `indices` (integers, or a boolean mask), same classes."""
        from transferkit.data.images import index_array

        indices = index_array(indices, len(self), "Subset indices must be")
        bad = indices[(indices < 0) | (indices >= len(self))]
        if bad.size:
            raise TransferkitError(
                f"Subset index {bad[0]} is out of range for {len(self)} texts; use "
                f"indices 0 to {len(self) - 1}.")
        return TextFile(self.path, [self.texts[i] for i in indices], self.labels[indices],
                        list(self.class_names), list(self.skipped),
                        [self.lines[i] for i in indices] if self.lines else [])

    def split(self, val_fraction, seed=0):
        """Splits into `(train, val)`, stratified, as `ImageFolder.split` does."""
        train, val = stratified_split(self.labels, self.class_names, val_fraction, seed,
                                      noun="text")
        return self.subset(train), self.subset(val)


def read_texts(path, *, text="text", label="label", header=None, quotes=None,
               skip_bad_rows=False, limit=None):
    """Reads a labelled text file: `(texts, labels, class_names)`.

    `read_text_file` with the same arguments, as a tuple.

    Args:
        path: a `.jsonl`, `.ndjson`, `.csv` or `.tsv` file, optionally
            gzip-compressed (`.jsonl.gz`); see the module docstring.
        text: the name of the text column (JSON field), or, in a CSV or TSV
            file, its position (0 is the first column). Defaults to `"text"`.
        label: the name or position of the label column (JSON field).
            Defaults to `"label"`. `None` reads unlabelled texts (`labels`
            is then `None`, `class_names` empty), from these files or from
            a `.txt` file, one text a line (what `predict` takes).
        header: whether a CSV or TSV file starts with a header row. Defaults
            to `None`: a header row when the columns are named, none when
            they are positions (a plain `label<TAB>text` file is
            `read_texts(path, label=0, text=1)`).
        quotes: whether a CSV or TSV field may be quoted (`"a, b"`).
            Defaults to `None`: yes for CSV, no for TSV (a quote is text).
        skip_bad_rows: skip the malformed rows (invalid JSON, missing
            fields, the wrong number of columns, an empty or invalid label)
            and say how many, and which, in one warning, instead of failing
            on the first. Defaults to `False`.
        limit: read only the first `limit` examples; `None` (default) reads
            them all.

    Returns:
        `texts`, a list of `str`; `labels`, an `np.int64` array of class
        indices; `class_names`, a list of `str` where label `i` is
        `class_names[i]`: the sorted label strings, or `"0"`, `"1"`, ... up to
        the largest label when the labels are integers.

    Example:

    >>> texts, labels, class_names = read_texts("imdb/imdb_train.jsonl.gz")  # doctest: +SKIP
    >>> len(texts), labels[:3], class_names  # doctest: +SKIP
    (25000, array([0, 0, 0]), ['0', '1'])
    >>> read_texts("reviews.csv", text="review", label="sentiment")[2]  # doctest: +SKIP
    ['negative', 'positive']
    >>> read_texts("messages.tsv", label=0, text=1)[2]  # doctest: +SKIP
    ['ham', 'spam']
    """
    data = read_text_file(path, text=text, label=label, header=header, quotes=quotes,
                          skip_bad_rows=skip_bad_rows, limit=limit)
    return data.texts, data.labels, data.class_names


def read_text_file(path, *, text="text", label="label", header=None, quotes=None,
                   skip_bad_rows=False, limit=None):
    """Reads a labelled text file: a `TextFile`; arguments as for `read_texts`.

    Example:

    >>> data = read_text_file("messages.tsv", label=0, text=1)  # doctest: +SKIP
    >>> data.class_counts()  # doctest: +SKIP
    {'ham': 4825, 'spam': 747}
    """
    path = Path(path).expanduser()
    for name, value in (("text", text), ("label", label)):
        if name == "label" and value is None:
            continue  # unlabelled texts
        if isinstance(value, bool) or not (
                isinstance(value, str) and value or isinstance(value, int) and value >= 0):
            raise TransferkitError(
                f"Invalid {name} column {value!r}: pass the column's name, such as "
                "'review', or its position, 0 for the first."
            )
    positions = isinstance(text, int)
    if label is not None and (positions != isinstance(label, int) or text == label):
        raise TransferkitError(
            f"text={text!r} and label={label!r}: name both columns or give both positions, "
            "two different ones.")
    if header not in (None, True, False):
        raise TransferkitError(f"header must be True, False or None (decide), got {header!r}.")
    for name, value in (("quotes", quotes), ("skip_bad_rows", skip_bad_rows)):
        if value not in ((None, True, False) if name == "quotes" else (True, False)):
            raise TransferkitError(f"{name} must be True or False, got {value!r}.")
    if header is False and not positions:
        raise TransferkitError(
            "header=False: without a header row the columns have no names; pass their "
            "positions (text=1, label=0).")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1
    ):
        raise TransferkitError(
            f"Invalid limit {limit!r}: use a positive integer, or None to read "
            "every example."
        )
    kind = _file_kind(path, labelled=label is not None)
    if not path.exists():
        raise TransferkitError(f"Text file '{path}' does not exist.")
    if path.is_dir():
        raise TransferkitError(
            f"'{path}' is a folder; pass a labelled text file ({', '.join(TEXT_EXTENSIONS)})."
        )
    if kind in _JSON_LINES and positions:
        raise TransferkitError(
            f"'{path}' holds JSON objects: name their fields (text='text', label='label'), "
            "not positions.")
    skipped = [] if skip_bad_rows else None  # (line, reason)
    header = not positions if header is None else header
    if kind == ".txt":
        rows = _lines
    elif kind in _JSON_LINES:
        rows = functools.partial(_json_rows, text=text, label=label, skipped=skipped)
    else:
        rows = functools.partial(_csv_rows, text=text, label=label, header=header,
                                 quotes=kind != ".tsv" if quotes is None else quotes,
                                 skipped=skipped)
    texts, raw_labels, lines = [], [], []
    try:
        with _open_text(path) as stream:
            for line, row in rows(stream, path, kind):
                texts.append(row[0])
                raw_labels.append(row[1])
                lines.append(line)
                if limit is not None and len(texts) == limit:
                    break
    except UnicodeDecodeError as error:
        raise TransferkitError(
            f"'{path}' is not UTF-8 text ({error.reason}); save it as UTF-8."
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise TransferkitError(
            f"Cannot decompress '{path}' ({error}); check that it is a complete "
            "gzip file, or drop the .gz extension if it is not compressed."
        ) from None
    except OSError as error:
        raise TransferkitError(f"Cannot read '{path}': {error.strerror or error}.") from None
    if label is None:
        labels, class_names = None, []
    elif texts:
        labels, class_names, kept = _encode_labels(
            raw_labels, lines, path, f"column {label}" if positions else label, kind, skipped)
        texts, lines = [texts[i] for i in kept], [lines[i] for i in kept]
    if skipped:
        skipped.sort()
        shown = "; ".join(f"line {n}: {reason}" for n, reason in skipped[:3])
        warnings.warn(f"Skipped {len(skipped)} malformed row(s) of '{path}' ({shown}"
                      f"{'; ...' if len(skipped) > 3 else ''}).", stacklevel=2)
    if not texts:
        where = " below its header" if kind not in _JSON_LINES and header else ""
        raise TransferkitError(f"Text file '{path}' has no examples{where}: add some rows.")
    return TextFile(path, texts, labels, class_names, skipped or [], lines)


class MultiHot:
    """Multi-hot bag-of-words vectors over the `max_tokens` most frequent words.

    `fit` counts every word of the texts (each occurrence, not each text) and
    keeps the `max_tokens` most frequent ones as `vocabulary_`, most frequent
    first; words with the same count are ordered alphabetically, so the
    vocabulary does not depend on the order of the texts. `transform` gives
    one row a text and one column a vocabulary word: 1 where the text has the
    word (at least once), 0 elsewhere. Words outside the vocabulary are
    ignored.

    Texts become words in two steps: `standardize` (see Args), then a split
    at whitespace.

    How this differs from the vectors of Deep Learning with Python (ch. 3-4),
    made with `keras.datasets.imdb.load_data(num_words=10000)`: there, column
    `i` is the word of frequency rank `i - 3` over the dataset's own word
    index, so the 10,000 columns hold the 9,996 most frequent words, a
    column (1) that is 1 in every row (the start-of-sequence mark), one (2)
    for "any rarer word", and two that are always 0 (0 and 3). Here all
    `max_tokens` columns are words: 10,000 words where the book has 9,996.
    The words themselves differ a little too: that dataset was tokenized by
    its makers (keeping "br" from HTML line breaks); this one by
    `standardize`. `keras.layers.TextVectorization(max_tokens=10000,
    output_mode="multi_hot")` would give 9,999 words and an out-of-vocabulary
    column.

    Args:
        max_tokens: the number of words to keep, an integer >= 1, or `None`
            to keep every word. The output has `len(vocabulary_)` columns:
            `max_tokens`, unless the texts have fewer distinct words.
            Defaults to 10000.
        standardize: what to do to each text before splitting it at
            whitespace. `"lower_and_strip_punctuation"` (default):
            lowercase it, replace HTML line breaks (`<br />`) and punctuation
            with spaces, keeping apostrophes inside words ("don't") and
            turning curly apostrophes into straight ones; `"lower"`: only
            lowercase it; `"strip_punctuation"`: only the punctuation and line
            breaks; `None`: nothing; or a callable from `str` to `str`.
        dtype: the NumPy dtype of the output. Defaults to `"float32"`, what
            a Keras model takes; `"uint8"` or `"bool"` take 4 times less
            memory (25,000 texts x 10,000 words: 1 GB as float32).

    Attributes:
        vocabulary_: the words kept by `fit`, a list of `str`, most frequent
            first; word `vocabulary_[i]` is column `i`.
        counts_: `np.int64` array, the number of times each vocabulary word
            occurs in the texts given to `fit`.

    Example:

    >>> vectorizer = MultiHot(max_tokens=3).fit(["A cat and a dog.", "A dog<br />barks!"])
    >>> vectorizer.vocabulary_
    ['a', 'dog', 'and']
    >>> vectorizer.transform(["The DOG, a dog.", "Cats bark."])
    array([[1., 1., 0.],
           [0., 0., 0.]], dtype=float32)
    """

    def __init__(self, max_tokens=10000, *, standardize="lower_and_strip_punctuation",
                 dtype="float32"):
        self.max_tokens = max_tokens
        self.standardize = standardize
        self.dtype = dtype

    def __repr__(self):
        fitted = f", {len(self.vocabulary_)} words" if hasattr(self, "vocabulary_") else ""
        return (
            f"MultiHot(max_tokens={self.max_tokens!r}, "
            f"standardize={self.standardize!r}, dtype={self.dtype!r}{fitted})"
        )

    def tokenize(self, text):
        """The words of one text, in order, after `standardize`.

        Example:

        >>> MultiHot().tokenize("Don't miss it:<br />well-made!")
        ["don't", 'miss', 'it', 'well', 'made']
        """
        self._check_parameters()
        if not isinstance(text, str):
            raise TransferkitError(
                f"Cannot tokenize {type(text).__name__} {text!r}: pass a string."
            )
        return self._words(text)

    def fit(self, texts):
        """Learns the vocabulary from `texts` (a list of strings); returns `self`."""
        self._check_parameters()
        texts = _check_texts(texts)
        counter = collections.Counter()
        for text in texts:
            counter.update(self._words(text))
        if not counter:
            raise TransferkitError(
                f"The {len(texts)} text(s) given to fit have no words; fit on "
                "texts with words in them."
            )
        # Most frequent first, ties alphabetical: independent of text order.
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        ranked = ranked[: self.max_tokens]
        self.vocabulary_ = [word for word, _ in ranked]
        self.counts_ = np.array([count for _, count in ranked], dtype=np.int64)
        self._index = {word: i for i, word in enumerate(self.vocabulary_)}
        return self

    def transform(self, texts):
        """Multi-hot rows for `texts`: an array of shape `(len(texts), len(vocabulary_))`."""
        if not hasattr(self, "vocabulary_"):
            raise TransferkitError(
                "This MultiHot has no vocabulary yet; call fit(texts) or "
                "fit_transform(texts) first."
            )
        self._check_parameters()
        texts = _check_texts(texts)
        output = np.zeros((len(texts), len(self.vocabulary_)), dtype=self.dtype)
        index = self._index
        for start in range(0, len(texts), _CHUNK):
            rows, columns = [], []
            for row, text in enumerate(texts[start:start + _CHUNK], start):
                found = {index[w] for w in self._words(text) if w in index}
                rows += [row] * len(found)
                columns += found
            output[rows, columns] = 1
        return output

    def fit_transform(self, texts):
        """`fit(texts)`, then `transform(texts)`."""
        texts = _check_texts(texts)
        return self.fit(texts).transform(texts)

    def _words(self, text):
        standardize = self.standardize
        if callable(standardize):
            text = standardize(text)
            if not isinstance(text, str):
                raise TransferkitError(
                    f"The standardize callable returned {type(text).__name__}; "
                    "it must return a string."
                )
            return text.split()
        if standardize in ("lower_and_strip_punctuation", "lower"):
            text = text.lower()
        if standardize in ("lower_and_strip_punctuation", "strip_punctuation"):
            text = _LINE_BREAK.sub(" ", text).replace("\u2019", "'")
            text = _PUNCTUATION.sub(" ", text)
        return text.split()

    def _check_parameters(self):
        tokens = self.max_tokens
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 1
        ):
            raise TransferkitError(
                f"Invalid max_tokens {tokens!r}: use a positive integer such as "
                "10000, or None to keep every word."
            )
        if not callable(self.standardize) and self.standardize not in STANDARDIZE:
            raise TransferkitError(
                f"Invalid standardize {self.standardize!r}: use one of "
                f"{', '.join(repr(s) for s in STANDARDIZE)}, or a callable from "
                "str to str."
            )
        try:
            kind = np.dtype(self.dtype).kind
        except TypeError:
            kind = None
        if kind not in ("b", "i", "u", "f"):
            raise TransferkitError(
                f"Invalid dtype {self.dtype!r}: use a numeric dtype such as "
                "'float32', 'uint8' or 'bool'."
            )


def _check_texts(texts):
    if isinstance(texts, (str, bytes)):
        raise TransferkitError(
            "texts is a single string; pass a list of strings (one a text), "
            "such as [text]."
        )
    try:
        texts = list(texts)
    except TypeError:
        raise TransferkitError(
            f"texts must be a list of strings, got {type(texts).__name__}."
        ) from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TransferkitError(
                f"Text {i} is {type(text).__name__} {text!r:.40}, not a string; "
                "pass a list of strings."
            )
    return texts


def check_text_file(path, labelled=True):
    """`path` as a `Path` if it can be a labelled text file, else a one-line error.

    Reads nothing: a cheap check to make before the long work (the name's
    extension, that it exists and is a file).

    Example:

    >>> check_text_file("reviews.txt")  # doctest: +SKIP
    Traceback (most recent call last):
    TransferkitError: Unknown text file type 'reviews.txt': use one of .csv, ...
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise TransferkitError(
            f"'{path}' is a folder; a text backbone reads a labelled text file "
            f"({', '.join(TEXT_EXTENSIONS)}, optionally .gz). For image folders pick an "
            "image backbone (`transferkit backbones`).")
    _file_kind(path, labelled)
    if not path.exists():
        raise TransferkitError(f"Text file '{path}' does not exist.")
    return path


def _file_kind(path, labelled=True):
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".txt" and labelled:
        raise TransferkitError(
            f"'{path.name}' is plain text, one text a line, without labels; labelled texts "
            f"go in a {', '.join(TEXT_EXTENSIONS)} file.")
    if kind not in TEXT_EXTENSIONS + (() if labelled else (".txt",)):
        raise TransferkitError(
            f"Unknown text file type '{path.name}': use one of "
            f"{', '.join(TEXT_EXTENSIONS + (() if labelled else ('.txt',)))}, optionally "
            "with .gz."
        )
    return kind


def _lines(stream, path, kind):
    """Yields `(line number, (text, None))` for each non-blank line of a `.txt` file."""
    for number, line in enumerate(stream, 1):
        line = line.rstrip("\r\n")
        if line.strip():
            yield number, (line, None)


def _open_text(path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _json_rows(stream, path, kind, *, text, label, skipped=None):
    """Yields `(line number, (text, label))`, checking each line.

    A malformed line raises, or with `skipped` (a list) is added to it as
    `(line number, reason)` and passed over.
    """
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            fields = _json_fields(line, number, path, text, label)
        except TransferkitError as error:
            if skipped is None:
                raise
            skipped.append((number, _reason(error)))
            continue
        yield number, fields


def _json_fields(line, number, path, text, label):
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise TransferkitError(
            f"Line {number} of '{path}' is not valid JSON ({error.msg}, "
            f"column {error.colno}); each line must be one JSON object."
        ) from None
    if not isinstance(row, dict):
        raise TransferkitError(
            f"Line {number} of '{path}' is a JSON {type(row).__name__}, not "
            "an object; each line must be one object such as "
            '{"text": "...", "label": 1}.'
        )
    return _fields(row, number, path, text, label)


def _csv_rows(stream, path, kind, *, text, label, header, quotes, skipped=None):
    """Yields `(line number, (text, label))`, checking the header and rows.

    `text` and `label` are column names (then `header` is true) or positions;
    `quotes`, whether fields may be quoted; `skipped` as in `_json_rows`.
    """
    tsv = kind == ".tsv"
    reader = csv.reader(stream, delimiter="\t" if tsv else ",",
                        quoting=csv.QUOTE_MINIMAL if quotes else csv.QUOTE_NONE)
    names, width = None, None
    if header:
        names = next(reader, None)
        if names is None:
            raise TransferkitError(
                f"Text file '{path}' is empty; a CSV file needs a header row naming "
                "its columns, then one row an example."
            )
        width = len(names)
    if isinstance(text, str):
        for name in (text, label):
            if name is not None and name not in names:
                argument = "text" if name == text else "label"
                raise TransferkitError(
                    f"'{path}' has no '{name}' column (columns found: "
                    f"{_list(names)}); pass {argument}= with the column's name."
                )
        columns = (names.index(text), None if label is None else names.index(label))
    else:
        columns = (text, label)
    needed = max(c for c in columns if c is not None) + 1
    spanning = []  # rows whose quoted fields hold line breaks: (first line, last line)
    last = reader.line_num
    for row in reader:
        first, last = last + 1, reader.line_num
        if last > first:
            spanning.append((first, last))
        if not row:
            continue
        if width is None:  # no header: the first row sets the width
            width = len(row)
            if needed > width:
                raise TransferkitError(
                    f"Line {reader.line_num} of '{path}' has {width} columns; text={text} "
                    f"and label={label} need {needed} (positions count from 0).")
        if len(row) != width:
            error = TransferkitError(
                f"Line {reader.line_num} of '{path}' has {len(row)} fields but "
                f"{'the header has' if header else 'the first row has'} {width}; "
                + ("quote fields that contain the separator." if quotes else
                   f"a field cannot hold a {'tab' if tsv else 'comma'} unquoted: replace it "
                   "in the text, or pass skip_bad_rows=True.")
            )
            if skipped is None:
                raise error
            skipped.append((reader.line_num, _reason(error)))
            continue
        yield reader.line_num, (row[columns[0]],
                                None if columns[1] is None else row[columns[1]])
    if spanning:
        # Legal CSV, and also what one unmatched quote does: say so, never silently.
        shown = ", ".join(f"{a}-{b}" for a, b in spanning[:_NAMES_SHOWN])
        warnings.warn(
            f"'{path}': {len(spanning)} example(s) span several lines (a quoted field with "
            f"line breaks), lines {shown}{' ...' if len(spanning) > _NAMES_SHOWN else ''}; "
            "if a text has a stray quote, its row swallowed the lines after it.",
            stacklevel=4)


def _reason(error):
    """A row's error without its "Line N of 'path'" prefix, for the warning."""
    return re.sub(r"^Line \d+ of '[^']*'(: | )", "", str(error)).split(";")[0]


def _fields(row, number, path, text, label):
    for name, argument in ((text, "text"), (label, "label")):
        if name is None:
            continue
        if name not in row:
            raise TransferkitError(
                f"Line {number} of '{path}' has no '{name}' field (fields "
                f"found: {_list(row)}); pass {argument}= with the field's name."
            )
    if not isinstance(row[text], str):
        raise TransferkitError(
            f"Line {number} of '{path}': the '{text}' field is "
            f"{json.dumps(row[text]):.40}, not a string."
        )
    return row[text], None if label is None else row[label]


def _encode_labels(raw, lines, path, name, kind, skipped=None):
    """`(np.int64 labels, class names, kept row indices)` from JSON values or CSV strings.

    A label that can be no class is an error, or, with `skipped` (a list),
    its row is left out and added to it as `(line number, reason)`.
    """
    kept = list(range(len(raw)))

    def drop(bad, message):
        """Leaves out the rows `bad` says no to, or fails on the first."""
        nonlocal kept
        for i in kept:
            if bad(raw[i]):
                if skipped is None:
                    raise TransferkitError(message(i))
                skipped.append((lines[i], _reason(message(i))))
        kept = [i for i in kept if not bad(raw[i])]

    if kind not in _JSON_LINES:
        drop(lambda v: not v.strip(), lambda i: (
            f"Line {lines[i]} of '{path}' has an empty '{name}' field; every example "
            "needs a label."))
        if all(_is_integer_string(raw[i]) for i in kept):
            raw = [int(v) if _is_integer_string(v) else v for v in raw]
    drop(lambda v: _label_kind(v) is None, lambda i: (
        f"Line {lines[i]} of '{path}': the '{name}' value {json.dumps(raw[i]):.40} is not a "
        "class; labels must be integers (class indices) or strings (class names)."))
    values = [raw[i] for i in kept]
    kinds = {_label_kind(v) for v in values}
    if kinds == {int}:
        drop(lambda v: v < 0, lambda i: (
            f"Line {lines[i]} of '{path}' has label {raw[i]}; integer labels are class "
            "indices 0, 1, ..."))
        labels = np.asarray([raw[i] for i in kept], dtype=np.int64)
        top = int(labels.max()) if labels.size else -1
        return labels, [str(k) for k in range(top + 1)], kept
    if kinds <= {str}:
        class_names = sorted(set(values))
        index = {c: i for i, c in enumerate(class_names)}
        return np.array([index[v] for v in values], dtype=np.int64), class_names, kept
    i = next(i for i in kept if isinstance(raw[i], str))
    raise TransferkitError(
        f"The '{name}' values of '{path}' mix integers and strings (line "
        f"{lines[i]} has {json.dumps(raw[i]):.40}); use one or the other."
    )


def _label_kind(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int
    if isinstance(value, str) and value.strip():
        return str
    return None


def _is_integer_string(value):
    return re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None


def _list(names):
    names = [repr(n) for n in names]
    if len(names) > _NAMES_SHOWN:
        names = names[:_NAMES_SHOWN] + [f"and {len(names) - _NAMES_SHOWN} more"]
    return ", ".join(names) if names else "none"
