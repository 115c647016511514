"""End to end on real photos: efficientnet_lite0 on hymenoptera (slow)."""

import importlib.util
import pathlib

import pytest

from conftest import SHARED_DATA

HYMENOPTERA = SHARED_DATA / "hymenoptera"
BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "finetune_hymenoptera.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (HYMENOPTERA / "train").is_dir(),
                       reason=f"real data absent: {HYMENOPTERA} (see ../shared/data/README)"),
]


def test_efficientnet_lite0_averages_093_on_ants_vs_bees_over_three_seeds(tmp_path,
                                                                         monkeypatch):
    import transferkit

    monkeypatch.syspath_prepend(str(BENCH.parent))  # the script imports bench/common.py
    spec = importlib.util.spec_from_file_location("bench_hymenoptera", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    scores = []
    for seed in bench.SEEDS:
        out = tmp_path / f"run-{seed}"
        run = transferkit.train(HYMENOPTERA / "train", out=out, val=HYMENOPTERA / "val",
                                verbose=0, **{**bench.RECIPE, "seed": seed})
        scores.append(run["metrics"]["best_val_accuracy"])
        result = transferkit.evaluate(out, HYMENOPTERA / "val")
        assert result["images"] == 153
        assert result["accuracy"] == pytest.approx(run["metrics"]["final_val_accuracy"])
    # The PyTorch tutorial's figures are 0.935 and 0.948 (one run each). One
    # run moves by a photo or two (1/153 = 0.0065) with the seed; the floor is
    # on the mean of three seeds, and no seed may fall far below it.
    assert sum(scores) / len(scores) >= 0.93, scores
    assert min(scores) >= 0.92, scores
