"""Seed 004 on the real IMDB reviews (../shared/data/imdb): text reading, the
vocabulary, and over-fitting with and without an L2 penalty."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import MultiHot, read_texts

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
TRAIN = IMDB / "imdb_train.jsonl.gz"
BENCH = Path(__file__).resolve().parents[1] / "bench" / "imdb_overfitting.py"

requires_imdb = pytest.mark.skipif(
    not TRAIN.is_file(), reason=f"real data absent: {TRAIN} (see ../shared/data/README.md)")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_imdb_overfitting", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@requires_imdb
def test_first_2000_real_reviews_read_and_give_plausible_top_words():
    texts, labels, class_names = read_texts(TRAIN, limit=2000)
    assert len(texts) == 2000
    assert all(isinstance(t, str) and len(t) > 10 for t in texts)
    assert labels.dtype == np.int64 and labels.shape == (2000,)
    # The file lists the negative reviews first.
    assert labels.tolist() == [0] * 2000
    assert class_names == ["0"]

    vectorizer = MultiHot(max_tokens=10000).fit(texts)
    assert {"the", "and", "a"} <= set(vectorizer.vocabulary_[:5])
    assert {"movie", "film", "bad"} <= set(vectorizer.vocabulary_[:100])
    assert "br" not in vectorizer.vocabulary_  # HTML line breaks are not words
    rows = vectorizer.transform(texts[:50])
    assert rows.shape == (50, 10000) and rows.dtype == np.float32
    assert set(np.unique(rows).tolist()) == {0.0, 1.0}
    # Every review has "the" or "a"; the average review has over 100 distinct words.
    assert rows[:, :3].max(axis=1).min() == 1.0
    assert rows.sum(axis=1).mean() > 100


@pytest.mark.slow
@requires_imdb
def test_original_overfits_after_a_few_epochs_and_l2_ends_lower():
    """The book's facts, on 15,000 training / 10,000 validation reviews.

    Deep Learning with Python: the original network's validation loss is
    lowest after about 4 epochs and then climbs (to 0.97 at epoch 20 in the
    seed's log); with l2(0.001) it ends far lower (0.43); best validation
    accuracy about 0.87-0.89. bench/README.md has the full comparison.
    """
    bench = load_bench()
    train, val, _ = bench.load_data(IMDB, seed=0)
    original = bench.summarize(bench.run_variant("original", train, val, epochs=20, seed=0)[0])
    l2 = bench.summarize(bench.run_variant("l2", train, val, epochs=20, seed=0)[0])

    assert original["best_epoch"] <= 6
    assert original["final_val_loss"] > 1.5 * original["min_val_loss"]
    assert l2["final_val_loss"] < original["final_val_loss"]
    assert original["best_val_accuracy"] > 0.86
    assert l2["best_val_accuracy"] > 0.86


@pytest.mark.slow
@requires_imdb
def test_the_cli_fine_tunes_minilm_on_real_reviews_above_a_floor(minilm, tmp_path, capsys):
    """A small version of `bench/text_imdb.py`'s default run, with its floor.

    600 training reviews and 400 test reviews (seeded, stratified), the
    command line's defaults but for 128 tokens a review (for time: IMDB's
    default is 512): MiniLM's frozen embeddings plus a head, then the whole
    encoder at 3e-5 after a warm-up. Measured 0.7825 in 183 s (bench/README.md,
    "Text end to end"); the floor leaves room for other machines' arithmetic.
    A rate that wrecks the encoder (the issue's report: Adam at 1e-3) gives one
    class for every review, which the recall check catches.
    """
    import json

    from helpers import run

    rng = np.random.default_rng(0)
    for name, source, n in (("train", TRAIN, 600), ("test", IMDB / "imdb_test.jsonl.gz", 400)):
        texts, labels, _ = read_texts(source)
        chosen = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(labels == c), n // 2, replace=False) for c in (0, 1)]))
        with open(tmp_path / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in chosen:
                f.write(json.dumps({"text": texts[i], "label": int(labels[i])}) + "\n")
    out = tmp_path / "run"
    assert run("train", tmp_path / "train.jsonl", "--backbone", "minilm_l6", "--out", out,
               "--head", "softmax", "--max-length", "128", "--no-report") == 0
    capsys.readouterr()
    assert run("evaluate", out, tmp_path / "test.jsonl", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    print(f"IMDB 600/400, 128 tokens: test accuracy {result['accuracy']:.4f}")
    assert result["texts"] == 400
    assert result["accuracy"] >= 0.75, result
    # Both classes found: not the majority-class collapse of a too-high rate.
    assert min(c["recall"] for c in result["classes"].values()) >= 0.5, result
