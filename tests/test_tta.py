"""Test-time augmentation: the views, and scores equal to the mean over them."""

import json

import numpy as np
import pytest
from helpers import FAST, make_folder, run

from transferkit.data.images import list_images, load_images
from transferkit.errors import TransferkitError
from transferkit.evaluation.inference import class_scores, evaluate, load_run, predict
from transferkit.evaluation.tta import MAX_VIEWS, check_views, views


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    data = make_folder(root / "data", n=6)
    out = root / "run"
    assert run("train", data, "--out", out, *FAST, "--epochs", "2,0") == 0
    return data, out


def test_views_are_the_image_its_mirror_and_crops_in_order():
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    found = views(x, MAX_VIEWS)
    assert len(found) == 8 and all(v.shape == x.shape and v.dtype == x.dtype for v in found)
    np.testing.assert_array_equal(found[0], x)
    np.testing.assert_array_equal(found[1], x[:, :, ::-1])
    np.testing.assert_array_equal(found[3], found[2][:, :, ::-1])  # the centre crop, mirrored
    assert len({v.tobytes() for v in found}) == 8
    # A corner crop keeps that corner's pixel: the top-left one is the image's.
    np.testing.assert_allclose(found[4][:, 0, 0].astype(int), x[:, 0, 0].astype(int), atol=1)


@pytest.mark.parametrize("value", [0, 9, 2.0, True, "2"])
def test_a_view_count_outside_one_to_eight_is_refused(value):
    with pytest.raises(TransferkitError, match="from 1 to 8"):
        check_views(value)


def test_tta_is_the_mean_of_the_models_scores_on_the_views(trained):
    data, out = trained
    files = list_images([data])
    loaded = load_run(out)
    x = load_images(files, loaded.image_size)
    plain = np.asarray(loaded.model.predict(x, verbose=0))
    mirrored = np.asarray(loaded.model.predict(x[:, :, ::-1], verbose=0))
    np.testing.assert_allclose(class_scores(loaded, x, tta=2), (plain + mirrored) / 2,
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(class_scores(loaded, x, tta=1), plain, rtol=1e-6, atol=1e-7)
    rows = predict(loaded, [data], tta=2)
    np.testing.assert_allclose([r["probabilities"] for r in rows], (plain + mirrored) / 2,
                               rtol=1e-5, atol=1e-6)
    figures = evaluate(loaded, data, tta=4)
    expected = np.mean([loaded.model.predict(v, verbose=0) for v in views(x, 4)], axis=0)
    labels = np.array([loaded.class_names.index(f.parent.name) for f in files])
    assert figures["accuracy"] == pytest.approx(np.mean(expected.argmax(axis=1) == labels))


def test_the_cli_takes_tta_and_refuses_a_bad_count_before_loading(trained, capsys):
    data, out = trained
    assert run("predict", out, data, "--tta", "2", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12
    assert run("evaluate", out, data, "--tta", "2") == 0
    assert capsys.readouterr().out.startswith("accuracy ")
    assert run("predict", out, data, "--tta", "9") == 2
    err = capsys.readouterr().err.strip()
    assert "tta must be a number of views from 1 to 8" in err and len(err.splitlines()) == 1
    assert run("predict", out, data, "--tta", "2", "--mc-samples", "5") == 2
    assert "not both" in capsys.readouterr().err
