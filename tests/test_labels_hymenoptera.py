"""End to end on real photos: multi-label and numeric targets made from hymenoptera (slow).

The targets are bench/labels.py's: ant, bee (the folder) and green (a colour
rule), and the photo's mean brightness. The floors sit below what
`bench/labels.py --network` measured (bench/README.md, "Labels from a table").
"""

import importlib.util
import pathlib

import pytest
from conftest import SHARED_DATA

HYMENOPTERA = SHARED_DATA / "hymenoptera"
BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "labels.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (HYMENOPTERA / "train").is_dir(),
                       reason=f"real data absent: {HYMENOPTERA} (see ../shared/data/README)"),
]


@pytest.fixture(scope="module")
def tables(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.syspath_prepend(str(BENCH.parent))  # the script imports bench/common.py
    spec = importlib.util.spec_from_file_location("bench_labels", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = tmp_path_factory.mktemp("labels")
    bench.labelled_folder(HYMENOPTERA / "train", root / "train")
    bench.labelled_folder(HYMENOPTERA / "val", root / "val")
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def train(root, kind, out, **options):
    import transferkit

    table = transferkit.LabelTable(root / f"train-{kind}.csv",
                                   val_labels=root / f"val-{kind}.csv")
    return transferkit.train(root / "train", "efficientnet_lite0", out, val=root / "val",
                             table=table, verbose=0, **options)


def test_per_label_logistic_regression_ranks_the_labels(tables, tmp_path):
    # Measured: mAP 0.911; ant and bee AP 0.99, green 0.75 (a colour rule the
    # pooled ImageNet features only partly keep).
    run = train(tables, "multilabel", tmp_path / "multi")
    metrics = run["metrics"]
    assert run["config"]["head"] == "logreg" and run["config"]["task"] == "multilabel"
    assert metrics["val_mean_average_precision"] >= 0.85, metrics
    for label in ("ant", "bee"):
        assert metrics["val_per_label"][label]["average_precision"] >= 0.95, metrics
    assert metrics["val_per_label"]["green"]["average_precision"] >= 0.6, metrics


def test_a_fine_tuned_network_learns_the_brightness(tables, tmp_path):
    import transferkit

    # Measured: R^2 0.638, MAE 14.5 against 23.8 for the training mean.
    run = train(tables, "brightness", tmp_path / "bright")
    metrics = run["metrics"]
    assert run["config"]["head"] == "softmax"  # auto fine-tunes a numeric target
    assert metrics["val_r2"] >= 0.45, metrics
    assert metrics["val_mae"] <= 19, metrics
    result = transferkit.evaluate(tmp_path / "bright", tables / "val",
                                  table=transferkit.LabelTable(tables / "val-brightness.csv"))
    assert result["mae"] == pytest.approx(metrics["val_mae"], rel=1e-3)
