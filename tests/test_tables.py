"""Labels from a table: parsing, the task each table means, and every mismatch with the folder."""

import numpy as np
import pytest
from PIL import Image

from transferkit.data.images import ImageFolder
from transferkit.data.tables import ImageTable, read_label_table
from transferkit.errors import TransferkitError


def photos(root, n=6):
    """`n` small images `0.png` ... in `root`, image `i` of brightness 20 * i."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(root / f"{i}.png")
    return root


def table(path, *rows):
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def folder(tmp_path):
    return photos(tmp_path / "images")


def test_one_class_per_image_is_an_image_folder_with_sorted_classes(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,label", *(f"{i}.png,{'cat' if i % 2 else 'ant'}"
                                                       for i in range(6)))
    found = read_label_table(folder, labels)
    assert isinstance(found, ImageFolder)
    assert found.class_names == ["ant", "cat"]
    assert found.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert [f.name for f in found.files] == [f"{i}.png" for i in range(6)]


def test_whole_numbers_are_classes_unless_the_task_says_regression(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,grade", *(f"{i}.png,{i % 3}" for i in range(6)))
    assert isinstance(read_label_table(folder, labels), ImageFolder)
    numbers = read_label_table(folder, labels, task="regression")
    assert numbers.task == "regression"
    np.testing.assert_array_equal(numbers.labels, [0, 1, 2, 0, 1, 2])


def test_a_fraction_makes_a_regression_target(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "image,brightness,notes",
                   *(f"{i}.png,{20 * i + 0.5},x" for i in range(6)))
    found = read_label_table(folder, labels, label_columns="brightness")
    assert isinstance(found, ImageTable) and found.task == "regression"
    assert found.class_names == ["brightness"]
    np.testing.assert_allclose(found.labels, [20 * i + 0.5 for i in range(6)])
    assert found.labels.dtype == np.float32


def test_several_zero_one_columns_are_multilabel(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "path,sky,tree", *(f"{i}.png,{i % 2},{int(i > 2)}"
                                                          for i in range(6)))
    found = read_label_table(folder, labels)
    assert found.task == "multilabel" and found.class_names == ["sky", "tree"]
    np.testing.assert_array_equal(found.labels[:, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(found.labels[:, 1], [0, 0, 0, 1, 1, 1])
    assert found.label_counts() == {"sky": 3, "tree": 3}


def test_a_semicolon_list_is_multilabel_and_an_empty_cell_no_label(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,labels", "0.png,tree;sky", "1.png,sky", "2.png,",
                   "3.png,tree", "4.png, sky ; tree", "5.png,sky")
    found = read_label_table(folder, labels)
    assert found.task == "multilabel" and found.class_names == ["sky", "tree"]
    np.testing.assert_array_equal(found.labels, [[1, 1], [1, 0], [0, 0], [0, 1], [1, 1],
                                                 [1, 0]])


def test_files_in_subfolders_and_a_tsv(tmp_path):
    photos(tmp_path / "images" / "a", 2)
    photos(tmp_path / "images" / "b", 2)
    labels = table(tmp_path / "t.tsv", "file\tlabel", "a/0.png\tx", "a/1.png\ty",
                   "b/0.png\tx", "b/1.png\ty")
    found = read_label_table(tmp_path / "images", labels)
    assert found.labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("rows, message", [
    (["file,label", "0.png,a", "1.png,b", "2.png,a", "3.png,b", "4.png,a", "5.png,b",
      "6.png,a"], "row 8: '6.png' is not an image file in"),
    (["file,label", "0.png,a", "1.png,b", "1.png,a", "2.png,b", "3.png,a", "4.png,b", "5.png,a"],
     "row 4: '1.png' is listed twice (also row 3)"),
    (["file,label", "0.png,a", "1.png,b", "2.png,a,extra", "3.png,b", "4.png,a", "5.png,b"],
     "row 4: 3 cells for 2 columns"),
    (["file,label", "0.png,a", "1.png,", "2.png,a", "3.png,b", "4.png,a", "5.png,b"],
     "row 3: no label"),
    (["file,a,b", "0.png,1,0", "1.png,0,1", "2.png,1,2", "3.png,0,1", "4.png,1,0", "5.png,0,1"],
     "row 4: b is '2', expected 0 or 1"),
    (["file,labels", "0.png,x;y;x", "1.png,y", "2.png,x", "3.png,y", "4.png,x", "5.png,y"],
     "row 2: a label is listed twice in 'x;y;x'"),
])
def test_a_bad_row_is_one_line_naming_it(folder, tmp_path, rows, message):
    labels = table(tmp_path / "t.csv", *rows)
    with pytest.raises(TransferkitError, match="--skip-bad-rows") as caught:
        read_label_table(folder, labels)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_value_that_is_not_a_number_for_regression(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,y", *(f"{i}.png,{i}.5" for i in range(5)),
                   "5.png,bright")
    with pytest.raises(TransferkitError, match="row 7: y 'bright' is not a number"):
        read_label_table(folder, labels, task="regression")


def test_an_image_no_row_lists_is_an_error(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,label", *(f"{i}.png,{'ab'[i % 2]}"
                                                       for i in range(5)))
    with pytest.raises(TransferkitError, match=r"1 image\(s\) in .* are in no row of t.csv "
                       r"\(first: '5.png'\)"):
        read_label_table(folder, labels)


def test_skip_bad_rows_leaves_them_out_and_counts_them(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,label", "0.png,a", "1.png,b", "1.png,a",
                   "2.png,a", "3.png,b", "4.png,", "missing.png,a")
    with pytest.warns(UserWarning, match=r"left out 3 bad row\(s\) .* and 1 image\(s\) no row "
                      r"lists \(first: '5.png'\)"):
        found = read_label_table(folder, labels, skip_bad_rows=True)
    assert [f.name for f in found.files] == ["0.png", "1.png", "2.png", "3.png"]
    assert found.labels.tolist() == [0, 1, 0, 1]


def test_an_image_that_does_not_decode_is_skipped_or_strict(folder, tmp_path):
    (folder / "5.png").write_bytes(b"not a png")
    labels = table(tmp_path / "t.csv", "file,y", *(f"{i}.png,{i}.5" for i in range(6)))
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        found = read_label_table(folder, labels)
    assert len(found) == 5 and found.labels.tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    with pytest.raises(TransferkitError, match="do not decode"):
        read_label_table(folder, labels, strict=True)


@pytest.mark.parametrize("content, kwargs, message", [
    (None, {}, "does not exist"),
    ("", {}, "is empty"),
    ("file,label\n", {}, "has a header and no rows"),
    ("file\n0.png\n", {}, "has 1 column"),
    ("file,label,label\n0.png,a,b\n", {}, "distinct name for every column"),
    ("file,label\n0.png,a\n", {"label_columns": "grade"}, "has no column 'grade'"),
    ("file,label\n0.png,a\n", {"file_column": "name"}, "has no column 'name'"),
    ("file,a,b\n0.png,1,0\n", {"task": "regression"}, "has 2 label columns"),
    ("file,label\n0.png,a\n", {"task": "clusters"}, "Unknown task 'clusters'"),
])
def test_a_bad_table_is_one_line(folder, tmp_path, content, kwargs, message):
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TransferkitError, match=message):
        read_label_table(folder, path, skip_bad_rows=True, **kwargs)


def test_a_table_of_one_class_is_refused(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,label", *(f"{i}.png,a" for i in range(6)))
    with pytest.raises(TransferkitError, match="at least two"):
        read_label_table(folder, labels)


def test_subset_keeps_the_task_and_names(folder, tmp_path):
    labels = table(tmp_path / "t.csv", "file,y", *(f"{i}.png,{i}.25" for i in range(6)))
    part = read_label_table(folder, labels).subset([4, 1])
    assert part.task == "regression" and part.labels.tolist() == [4.25, 1.25]
    assert [f.name for f in part.files] == ["4.png", "1.png"]
