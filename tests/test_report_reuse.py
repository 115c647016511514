"""`train`'s report from what it has in memory: the same report, without the second pass.

`write_report(..., evaluated=(scores, images))` takes the class scores and
the decoded images from the caller; `train` passes the final model's scores
on its validation array. The report must be the one `write_report` computes
afterwards from the saved run folder (model loaded, images decoded again).
"""

import json
import numbers
import types
from pathlib import Path

import numpy as np
import pytest
from helpers import make_folder, run

from transferkit.data import images as images_module
from transferkit.errors import TransferkitError
from transferkit.evaluation import inference
from transferkit.evaluation import report as report_module
from transferkit.evaluation.report import write_report

# helpers.FAST with the head phase only, the report on and pretrained weights
# (shipped, offline): a random backbone's features all but vanish at 32 px,
# where every probability is 0.5.
ARGS = ["--backbone", "efficientnet_lite0", "--image-size", "32", "--epochs", "3,0",
        "--batch-size", "8", "--no-augment"]
TRAIN, VAL = 6, 5  # images per class


def _refuse(*args, **kwargs):
    raise AssertionError("the reuse path must not load a model or decode an image")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reuse")
    return make_folder(root / "data", n=TRAIN), make_folder(root / "val", n=VAL, seed=1)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """`head -> run`: one train run per head, made on first use.

    Each with the report, the model loader refused and the decoded images
    counted; `report` is the report.json that train wrote.
    """
    made = {}

    def get(head):
        if head not in made:
            made[head] = _train(*data, tmp_path_factory.mktemp(head) / "run", head)
        return made[head]

    return get


@pytest.fixture(params=["softmax", "logreg", "linear-svm"])
def trained(request, runs):
    return runs(request.param)


def _train(train_dir, val, out, head):
    decoded = []  # every decoded file, in order
    marks = {}  # len(decoded) when the report began and ended
    read = images_module._read
    write = report_module.write_report

    def counted(path, *args, **kwargs):
        decoded.append(Path(path).parent.parent.name)  # "data" or "val"
        return read(path, *args, **kwargs)

    def marked(*args, **kwargs):
        marks["start"] = len(decoded)
        write(*args, **kwargs)
        marks["end"] = len(decoded)

    with pytest.MonkeyPatch.context() as patch:
        # `report._evaluate` imports the loader from `inference` when it runs.
        patch.setattr(inference, "load_run", _refuse)
        patch.setattr(images_module, "_read", counted)
        patch.setattr(report_module, "write_report", marked)
        code = run("train", train_dir, "--val", val, "--out", out, *ARGS, "--head", head)
    return types.SimpleNamespace(code=code, out=out, val=val, decoded=decoded, marks=marks,
                                 report=json.loads((out / "report.json").read_text()))


def _assert_close(got, expected, where="report"):
    """Equal, numbers within 1e-5."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            _assert_close(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(expected, numbers.Real) and not isinstance(expected, bool):
        assert got == pytest.approx(expected, abs=1e-5), where
    else:
        assert got == expected, where


def test_train_loads_no_model_and_the_report_decodes_only_thumbnails(trained):
    assert trained.code == 0
    before = trained.decoded[:trained.marks["start"]]
    during = trained.decoded[trained.marks["start"]:trained.marks["end"]]
    # Training: each training image once (the features), the validation
    # images once for the features and, after a network trained, once for
    # the final model's scores (streamed images are decoded again, not kept).
    assert before.count("data") == 2 * TRAIN
    assert before.count("val") == 2 * VAL * (2 if trained.report["head"] == "softmax" else 1)
    # The report: the thumbnails of the worst examples, nothing else.
    assert during == ["val"] * len(trained.report["worst"])
    assert trained.report["evaluation"]["images"] == 2 * VAL
    assert len(trained.report["worst"]) == 2 * VAL


def test_train_report_equals_the_recomputed_one(trained):
    write_report(trained.out)  # the run's --val folder, from disk
    recomputed = json.loads((trained.out / "report.json").read_text())
    assert recomputed["evaluation"] is not None and recomputed["worst"]
    _assert_close(trained.report, recomputed)  # evaluation and worst included


def test_write_report_takes_scores_and_images(trained, monkeypatch):
    loaded = inference.load_run(trained.out)
    folder = images_module.scan_image_folder(trained.val)
    x, _ = folder.load(loaded.image_size, crop=loaded.crop)
    scores = inference.class_scores(loaded, x)
    monkeypatch.setattr(inference, "load_run", _refuse)
    monkeypatch.setattr(images_module, "_read", _refuse)
    write_report(trained.out, data_dir=trained.val, evaluated=(scores, x), worst=3)
    report = json.loads((trained.out / "report.json").read_text())
    _assert_close(report["evaluation"], trained.report["evaluation"], "evaluation")
    _assert_close(report["worst"], trained.report["worst"][:3], "worst")


@pytest.mark.parametrize("change, message", [
    (lambda s, x: (s[:-1], x), r"scores must be numbers of shape \(10, 2\).*\(9, 2\)"),
    (lambda s, x: (s[:, :1], x), r"scores must be numbers of shape \(10, 2\).*\(10, 1\)"),
    (lambda s, x: (s.astype(str), x), r"scores must be numbers.*<U"),
    (lambda s, x: (s, x[:-1]), r"images must be the 10 decoded images.*\(9, 32, 32, 3\)"),
    (lambda s, x: (s, x[0]), r"images must be the 10 decoded images.*\(32, 32, 3\)"),
    (lambda s, x: s, "evaluated must be a pair"),
])
def test_evaluated_is_checked(runs, change, message):
    scores = np.full((2 * VAL, 2), 0.5, dtype="float32")
    x = np.zeros((2 * VAL, 32, 32, 3), dtype="uint8")
    with pytest.raises(TransferkitError, match=message) as info:
        write_report(runs("softmax").out, data_dir=runs("softmax").val,
                     evaluated=change(scores, x))
    assert "\n" not in str(info.value)


def test_evaluated_needs_data_dir(runs):
    with pytest.raises(TransferkitError, match="evaluated needs data_dir"):
        write_report(runs("softmax").out, evaluated=([], []))
