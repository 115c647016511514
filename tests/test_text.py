"""Labelled text files and multi-hot vectors (transferkit.data.text)."""

import collections
import doctest
import gzip
import json
import re

import numpy as np
import pytest

from transferkit.data import MultiHot, read_texts
from transferkit.data import text as text_module
from transferkit.errors import TransferkitError

CORPUS = [
    "The film was good, the acting was good.",
    "A bad film. The plot? Bad!<br /><br />The end",
    "Good music; good cast, and a good director.",
    "I didn't like it: the film is too long.",
    "Long, long, LONG... and boring",
]


def reference_words(text):
    """The tokenizer spelled out independently: lowercase, line breaks and
    punctuation to spaces, apostrophes kept only between letters."""
    text = text.lower().replace("<br />", " ")
    return re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text)


def write_jsonl(path, rows, compress=False):
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")
    return path


# --- MultiHot -------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_vocabulary_is_the_k_most_frequent_words(k):
    counts = collections.Counter(w for t in CORPUS for w in reference_words(t))
    # Ties broken alphabetically, as documented.
    expected = sorted(counts, key=lambda w: (-counts[w], w))[:k]
    vectorizer = MultiHot(max_tokens=k).fit(CORPUS)
    assert vectorizer.vocabulary_ == expected
    assert vectorizer.counts_.tolist() == [counts[w] for w in expected]
    assert vectorizer.counts_.dtype == np.int64


def test_vocabulary_counts_occurrences_and_breaks_ties_alphabetically():
    vectorizer = MultiHot(max_tokens=4).fit(["b b b a", "c c d e", "e"])
    # b: 3, c: 2, e: 2, a: 1, d: 1 -> c before e, a before d.
    assert vectorizer.vocabulary_ == ["b", "c", "e", "a"]
    assert vectorizer.counts_.tolist() == [3, 2, 2, 1]


def test_vocabulary_does_not_depend_on_the_order_of_the_texts():
    forward = MultiHot(max_tokens=6).fit(CORPUS).vocabulary_
    backward = MultiHot(max_tokens=6).fit(CORPUS[::-1]).vocabulary_
    assert forward == backward


def test_multi_hot_rows_are_the_sets_of_known_words():
    vectorizer = MultiHot(max_tokens=5).fit(CORPUS)
    # the: 5, good: 5, film: 3, long: 4, was: 2, a: 2, and: 2, bad: 2.
    assert vectorizer.vocabulary_ == ["good", "the", "long", "film", "a"]
    rows = vectorizer.transform([
        "The film, the film, THE FILM!",
        "long live the good, the bad",
        "nothing known here",
        "",
    ])
    expected = np.array([
        [0, 1, 0, 1, 0],  # {the, film}
        [1, 1, 1, 0, 0],  # {good, the, long}; "bad" is not kept
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ], dtype=np.float32)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, expected)


def test_rows_match_the_reference_tokenizer_on_every_text():
    vectorizer = MultiHot(max_tokens=None).fit(CORPUS)
    rows = vectorizer.transform(CORPUS)
    assert rows.shape == (len(CORPUS), len(vectorizer.vocabulary_))
    for text, row in zip(CORPUS, rows):
        words = {vectorizer.vocabulary_[i] for i in np.flatnonzero(row)}
        assert words == set(reference_words(text))


def test_transform_streams_in_chunks_with_the_same_result(monkeypatch):
    texts = CORPUS * 7
    whole = MultiHot(max_tokens=10).fit_transform(texts)
    monkeypatch.setattr(text_module, "_CHUNK", 3)
    chunked = MultiHot(max_tokens=10).fit_transform(texts)
    np.testing.assert_array_equal(whole, chunked)


@pytest.mark.parametrize("dtype", ["uint8", "bool", "float64"])
def test_dtype_is_honoured(dtype):
    rows = MultiHot(max_tokens=3, dtype=dtype).fit_transform(CORPUS)
    assert rows.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(
        rows.astype(np.float32), MultiHot(max_tokens=3).fit_transform(CORPUS))


def test_fewer_words_than_max_tokens_gives_fewer_columns():
    vectorizer = MultiHot().fit(["one two", "two three"])
    assert vectorizer.vocabulary_ == ["two", "one", "three"]
    assert vectorizer.transform(["three"]).shape == (1, 3)


def test_standardize_strips_line_breaks_and_punctuation_but_not_apostrophes():
    tokenize = MultiHot().tokenize
    assert tokenize("Don't<br />STOP.<BR>Well-made, isn\u2019t it?") == [
        "don't", "stop", "well", "made", "isn't", "it"]
    assert tokenize("'quoted' rock'n'roll snake_case 90's") == [
        "quoted", "rock'n'roll", "snake", "case", "90's"]
    assert MultiHot(standardize="lower").tokenize("A-b C") == ["a-b", "c"]
    assert MultiHot(standardize="strip_punctuation").tokenize("A-b C") == ["A", "b", "C"]
    assert MultiHot(standardize=None).tokenize("A-b C") == ["A-b", "C"]
    assert MultiHot(standardize=str.upper).tokenize("a-b c") == ["A-B", "C"]


def test_repr_shows_the_parameters_and_the_fitted_size():
    vectorizer = MultiHot(max_tokens=2)
    assert repr(vectorizer) == (
        "MultiHot(max_tokens=2, standardize='lower_and_strip_punctuation', dtype='float32')")
    assert repr(vectorizer.fit(CORPUS)).endswith(", 2 words)")


@pytest.mark.parametrize("kwargs, message", [
    ({"max_tokens": 0}, "Invalid max_tokens 0"),
    ({"max_tokens": 2.5}, "Invalid max_tokens 2.5"),
    ({"max_tokens": True}, "Invalid max_tokens True"),
    ({"standardize": "lowercase"}, "Invalid standardize 'lowercase'"),
    ({"dtype": "str"}, "Invalid dtype 'str'"),
    ({"dtype": "nonsense"}, "Invalid dtype 'nonsense'"),
])
def test_bad_parameters_are_named_when_fitting(kwargs, message):
    with pytest.raises(TransferkitError, match=re.escape(message)):
        MultiHot(**kwargs).fit(CORPUS)


def test_bad_texts_are_clear_errors():
    with pytest.raises(TransferkitError, match="single string; pass a list"):
        MultiHot().fit("a text")
    with pytest.raises(TransferkitError, match="Text 1 is int 3, not a string"):
        MultiHot().fit(["a", 3])
    with pytest.raises(TransferkitError, match="must be a list of strings, got int"):
        MultiHot().fit(5)
    with pytest.raises(TransferkitError, match="have no words"):
        MultiHot().fit(["", "...!"])
    with pytest.raises(TransferkitError, match=re.escape("call fit(texts)")):
        MultiHot().transform(["a"])
    with pytest.raises(TransferkitError, match="must return a string"):
        MultiHot(standardize=lambda t: t.split()).fit(["a b"])


def test_docstring_examples_run():
    result = doctest.testmod(text_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3
    assert result.failed == 0


# --- read_texts -----------------------------------------------------------


def test_reads_jsonl_with_integer_labels(tmp_path):
    path = write_jsonl(tmp_path / "reviews.jsonl", [
        {"id": "a", "label": 1, "text": "Great."},
        {"id": "b", "label": 0, "text": "Awful."},
        {"id": "c", "label": 2, "text": "Meh."},
    ])
    texts, labels, class_names = read_texts(path)
    assert texts == ["Great.", "Awful.", "Meh."]
    assert labels.dtype == np.int64
    assert labels.tolist() == [1, 0, 2]
    assert class_names == ["0", "1", "2"]


def test_reads_gzipped_jsonl_with_string_labels_other_columns_and_blank_lines(tmp_path):
    path = tmp_path / "reviews.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"review": "Fine \u00e9t\u00e9 film", "sentiment": "pos"}) + "\n\n")
        f.write(json.dumps({"review": "Bad", "sentiment": "neg"}) + "\n")
        f.write(json.dumps({"review": "Good", "sentiment": "pos"}) + "\n")
    texts, labels, class_names = read_texts(path, text="review", label="sentiment")
    assert texts == ["Fine \u00e9t\u00e9 film", "Bad", "Good"]
    assert class_names == ["neg", "pos"]  # sorted
    assert labels.tolist() == [1, 0, 1]


def test_reads_csv_with_header_quotes_and_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(
        'id,review,sentiment\n'
        '1,"Long, but ""good""\nreally",positive\n'
        '2,Dull,negative\n'
        '3,Fun,positive\n', encoding="utf-8")
    with pytest.warns(UserWarning, match=r"1 example\(s\) span several lines .*lines 2-3"):
        texts, labels, class_names = read_texts(path, text="review", label="sentiment")
    assert texts == ['Long, but "good"\nreally', "Dull", "Fun"]
    assert class_names == ["negative", "positive"]
    assert labels.tolist() == [1, 0, 1]


def test_csv_labels_that_are_all_integers_are_class_indices(tmp_path):
    path = tmp_path / "reviews.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        f.write("\ufefftext,label\r\nyes,1\r\nno,0\r\n")  # BOM and CRLF, as Excel writes
    texts, labels, class_names = read_texts(path)
    assert texts == ["yes", "no"]
    assert labels.tolist() == [1, 0]
    assert class_names == ["0", "1"]


def test_reads_tsv(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("label\ttext\nb\tone, two\na\tthree\n", encoding="utf-8")
    texts, labels, class_names = read_texts(path)
    assert (texts, labels.tolist(), class_names) == (["one, two", "three"], [1, 0], ["a", "b"])


def test_tsv_quotes_are_text_never_a_field_across_lines(tmp_path):
    # A stray quote used to open a quoted field that swallowed the next lines.
    path = tmp_path / "messages.tsv"
    path.write_text('label\ttext\nham\tsee you at "the pub\nspam\tWIN "cash" now\n'
                    'ham\tok\n', encoding="utf-8")
    texts, labels, class_names = read_texts(path)
    assert texts == ['see you at "the pub', 'WIN "cash" now', "ok"]
    assert (labels.tolist(), class_names) == ([0, 1, 0], ["ham", "spam"])
    path.write_text("label\ttext\nham\tone\ttwo\n", encoding="utf-8")
    with pytest.raises(TransferkitError, match="Line 2 of .* has 3 fields but the header has 2; "
                                               "a field cannot hold a tab unquoted"):
        read_texts(path)
    # Asked for, TSV fields may be quoted.
    path.write_text('label\ttext\nham\t"one\ttwo"\n', encoding="utf-8")
    assert read_texts(path, quotes=True)[0] == ["one\ttwo"]


@pytest.mark.parametrize("name, content", [
    ("plain.tsv", "ham\tsee you\nspam\tWIN now\nham\tok\n"),
    ("plain.csv", 'ham,see you\nspam,"WIN, now"\nham,ok\n'),
])
def test_headerless_files_are_read_by_position(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    texts, labels, class_names = read_texts(path, label=0, text=1)
    assert texts == ["see you", "WIN now" if name.endswith("tsv") else "WIN, now", "ok"]
    assert (labels.tolist(), class_names) == ([0, 1, 0], ["ham", "spam"])
    # With a header row, positions still work and the header is not an example.
    path.write_text("kind,words\n" + content if name.endswith("csv")
                    else "kind\twords\n" + content, encoding="utf-8")
    assert read_texts(path, label=0, text=1, header=True)[0] == texts


def test_headerless_mistakes_name_the_line(tmp_path):
    path = tmp_path / "plain.tsv"
    path.write_text("ham\tone\nspam\n", encoding="utf-8")
    with pytest.raises(TransferkitError, match="Line 2 of .* has 1 fields but the first row has 2"):
        read_texts(path, label=0, text=1)
    with pytest.raises(TransferkitError, match=r"Line 1 of .* has 2 columns; text=2 and label=0 "
                                               r"need 3 \(positions count from 0\)"):
        read_texts(path, label=0, text=2)
    path.write_text("", encoding="utf-8")
    with pytest.raises(TransferkitError, match="has no examples: add some rows"):
        read_texts(path, label=0, text=1)


def test_csv_rows_across_lines_are_read_and_named_in_a_warning(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"Great movie,1\nbad" one,0\nok,1\n"two\nlines",1\n',
                    encoding="utf-8")
    with pytest.warns(UserWarning, match=r"2 example\(s\) span several lines .*lines 2-3, 5-6"):
        texts, labels, _ = read_texts(path)
    assert texts == ["Great movie,1\nbad one", "ok", "two\nlines"]
    assert labels.tolist() == [0, 1, 1]


@pytest.mark.parametrize("name, content, bad", [
    ("r.jsonl", ('{"text": "good", "label": 1}\nnot json\n[1, 2]\n{"text": "no label"}\n'
                 '{"text": 5, "label": 0}\n{"text": "null", "label": null}\n'
                 '{"text": "neg", "label": -1}\n{"text": "fine", "label": 0}\n'),
     [2, 3, 4, 5, 6, 7]),
    ("r.csv", 'text,label\ngood,1\ntoo,many,fields\nempty,\nneg,-2\nfine,0\n', [3, 4, 5]),
    ("r.tsv", 'text\tlabel\ngood\t1\nshort\nfine\t0\n', [3]),
])
def test_skip_bad_rows_skips_and_names_them_in_one_warning(tmp_path, name, content, bad):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TransferkitError, match=f"Line {bad[0]} of"):
        read_texts(path)
    with pytest.warns(UserWarning, match=rf"Skipped {len(bad)} malformed row\(s\) of .*line "
                                         rf"{bad[0]}: ") as caught:
        texts, labels, _ = read_texts(path, skip_bad_rows=True)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert (texts, labels.tolist()) == (["good", "fine"], [1, 0])


def test_limit_reads_only_the_first_examples(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": str(i), "label": i % 2} for i in range(10)]
                       + ["not json: never read"])
    texts, labels, _ = read_texts(path, limit=4)
    assert texts == ["0", "1", "2", "3"]
    assert labels.tolist() == [0, 1, 0, 1]


def test_missing_and_misnamed_files_are_clear_errors(tmp_path):
    with pytest.raises(TransferkitError, match="does not exist"):
        read_texts(tmp_path / "nope.jsonl")
    with pytest.raises(TransferkitError, match=r"Unknown text file type 'notes\.doc'"):
        read_texts(tmp_path / "notes.doc")
    with pytest.raises(TransferkitError, match=r"'notes\.txt' is plain text, one text a line, "
                       "without labels"):
        read_texts(tmp_path / "notes.txt")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(TransferkitError, match="is a folder"):
        read_texts(tmp_path / "folder.csv")
    (tmp_path / "fake.jsonl.gz").write_text("plain text")
    with pytest.raises(TransferkitError, match="Cannot decompress"):
        read_texts(tmp_path / "fake.jsonl.gz")
    (tmp_path / "latin1.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(TransferkitError, match="is not UTF-8 text"):
        read_texts(tmp_path / "latin1.csv")


def test_missing_columns_name_the_columns_found(tmp_path):
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("review,sentiment\ngood,1\n")
    with pytest.raises(TransferkitError, match=re.escape(
            "has no 'text' column (columns found: 'review', 'sentiment'); pass text=")):
        read_texts(csv_path)
    with pytest.raises(TransferkitError, match="has no 'label' column .*; pass label="):
        read_texts(csv_path, text="review")
    json_path = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": 0}, {"text": "b"}])
    with pytest.raises(TransferkitError, match=re.escape(
            "Line 2 of '" + str(json_path) + "' has no 'label' field (fields found: 'text')")):
        read_texts(json_path)


@pytest.mark.parametrize("name, content, message", [
    ("r.jsonl", "", "has no examples: add some rows"),
    ("r.jsonl", "\n \n", "has no examples: add some rows"),
    ("r.csv", "", "is empty; a CSV file needs a header row"),
    ("r.csv", "text,label\n", "has no examples below its header"),
])
def test_empty_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TransferkitError, match=message):
        read_texts(path)


def test_bad_json_lines_are_named_by_line_number(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a", "label": 0}\n\n{"text": "b", "label": 1,}\n')
    with pytest.raises(TransferkitError, match=r"Line 3 of .* is not valid JSON"):
        read_texts(path)
    path.write_text('{"text": "a", "label": 0}\n["b", 1]\n')
    with pytest.raises(TransferkitError, match=r"Line 2 of .* is a JSON list, not an object"):
        read_texts(path)


@pytest.mark.parametrize("rows, message", [
    ([{"text": "a", "label": 0}, {"text": "b", "label": "pos"}], "mix integers and strings"),
    ([{"text": "a", "label": 1.5}], "Line 1 .* value 1.5 is not a class"),
    ([{"text": "a", "label": None}], "Line 1 .* value null is not a class"),
    ([{"text": "a", "label": True}], "Line 1 .* value true is not a class"),
    ([{"text": "a", "label": 0}, {"text": "a", "label": -1}], "Line 2 .* has label -1"),
    ([{"text": 7, "label": 0}], "Line 1 .* the 'text' field is 7, not a string"),
])
def test_bad_json_values_are_clear_errors(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    with pytest.raises(TransferkitError, match=message):
        read_texts(path)


def test_bad_csv_rows_are_named_by_line_number(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nok,pos\nan, unquoted comma,neg\n")
    with pytest.raises(TransferkitError, match="Line 3 of .* has 3 fields but the header has 2"):
        read_texts(path)
    path.write_text("text,label\nok,pos\nno label,\n")
    with pytest.raises(TransferkitError, match="Line 3 of .* has an empty 'label' field"):
        read_texts(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"text": ""}, "Invalid text column ''"),
    ({"label": -1}, "Invalid label column -1"),
    ({"label": 3}, "name both columns or give both positions"),
    ({"text": 0, "label": 0}, "two different ones"),
    ({"text": 1, "label": 0}, "holds JSON objects: name their fields"),
    ({"header": "yes"}, "header must be True, False or None"),
    ({"header": False}, "without a header row the columns have no names"),
    ({"limit": 0}, "Invalid limit 0"),
])
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, message):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": 0}])
    with pytest.raises(TransferkitError, match=message):
        read_texts(path, **kwargs)
