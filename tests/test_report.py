"""`transferkit report`: one self-contained HTML page (and report.json) per run."""

import html.parser
import json
import os
import shutil
import subprocess

import pytest

from helpers import FAST, make_folder, run
from transferkit.evaluation import report as report_module
from transferkit.evaluation.report import write_report

CLASSES = ("<b>&x", "red")  # a class folder name that must be escaped
HEAD_ONLY = FAST[:FAST.index("--epochs")] + ["--epochs", "2,0"] + FAST[FAST.index("--epochs") + 2:]
SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "screenshot_report.sh")


class _Page(html.parser.HTMLParser):
    """Collects what the tests look at: sources, links, the confusion matrix."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.confusion, self._in_confusion = [], [], [], False
        self._row, self._cell = None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for name in ("src", "href"):
            if name in attrs and tag != "img":
                self.links.append(attrs[name])
        if tag == "table" and attrs.get("class") == "confusion":
            self._in_confusion = True
        if self._in_confusion and tag == "tr":
            self._row = []
        if self._in_confusion and tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(int(self._cell))
            self._cell = None
        if tag == "tr" and self._in_confusion and self._row:
            self.confusion.append(self._row)
            self._row = None
        if tag == "table":
            self._in_confusion = False


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = make_folder(root / "data", n=6, classes=CLASSES)
    val = make_folder(root / "val", n=4, seed=1, classes=CLASSES)
    out = root / "run"
    assert run("train", data, "--val", val, "--out", out, *HEAD_ONLY) == 0
    return data, val, out


@pytest.fixture(scope="module")
def written(trained):
    """The report of the run on its own validation folder, through the CLI, as written.

    `(path, html text, report.json)`, kept from before later tests rewrite it.
    """
    _, _, out = trained
    assert run("report", out) == 0
    path = out / "report.html"
    return path, path.read_text(encoding="utf-8"), json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def truth(trained):
    """`inference.evaluate` and `inference.predict` on the validation folder, one model load."""
    from transferkit.evaluation.inference import evaluate, load_run, predict

    _, val, out = trained
    loaded = load_run(out)
    return evaluate(loaded, val), {row["path"]: row for row in predict(loaded, [val])}


def _page(text):
    page = _Page()
    page.feed(text)
    return page


def test_the_report_is_one_self_contained_file(trained, written):
    _, _, out = trained
    _, text, data = written
    page = _page(text)
    assert not any(url in text for url in ("http://", "https://"))
    assert text.count('src="') == len(page.images)
    assert all(src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
               for src in page.images)
    assert not page.links  # no stylesheet, script or font to fetch
    # The curves and one thumbnail per validation image: min(12, 8).
    assert len(data["worst"]) == 8
    assert len(page.images) == 1 + 8
    assert sum(src.startswith("data:image/jpeg") for src in page.images) == 8
    for section in ("Metrics", "Diagnosis", "Curves", "Evaluation", "Confusion matrix",
                    "Worst-classified examples", "Configuration", "Phases"):
        assert f">{section}<" in text
    assert "mobilenet_v3_small on data" in text
    assert [p for p in os.listdir(out) if p.startswith(".")] == []  # no temp files


def test_confusion_matrix_equals_evaluate(written, truth):
    _, text, data = written
    expected, _ = truth
    assert _page(text).confusion == expected["confusion_matrix"]
    evaluation = data["evaluation"]
    assert evaluation["confusion_matrix"] == expected["confusion_matrix"]
    assert evaluation["accuracy"] == pytest.approx(expected["accuracy"])
    assert evaluation["classes"] == expected["classes"]
    assert evaluation["class_names"] == list(CLASSES) == expected["class_names"]
    assert evaluation["images"] == 8


def _check_worst(examples, rows):
    true = [e["true_class_probability"] for e in examples]
    assert true == sorted(true)
    for e in examples:  # each figure is predict's for that file
        row = rows[e["path"]]
        assert e["probabilities"] == pytest.approx(row["probabilities"], abs=1e-6)
        assert e["predicted_class"] == row["class"]
        assert e["true_class"] == os.path.basename(os.path.dirname(e["path"]))
        assert e["true_class_probability"] == pytest.approx(
            row["probabilities"][list(CLASSES).index(e["true_class"])], abs=1e-6)
    chosen = {e["path"] for e in examples}
    rest = [r["probabilities"][list(CLASSES).index(os.path.basename(os.path.dirname(p)))]
            for p, r in rows.items() if p not in chosen]
    assert all(v >= true[-1] - 1e-6 for v in rest)  # the others are no worse


def test_worst_examples_are_the_least_probable_true_classes(written, truth):
    _check_worst(written[2]["worst"], truth[1])


def test_cli_data_and_worst(trained, truth, capsys):
    _, val, out = trained
    assert run("report", out, "--data", val, "--worst", "3") == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    data = json.loads((out / "report.json").read_text())
    assert len(data["worst"]) == 3
    _check_worst(data["worst"], truth[1])
    assert len(_page((out / "report.html").read_text()).images) == 1 + 3


def test_report_json_has_the_same_numbers(trained, written):
    from transferkit.evaluation.diagnosis import diagnose_run

    _, _, out = trained
    _, text, data = written
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert data["command"] == "train" and data["backbone"] == "mobilenet_v3_small"
    assert data["metrics"] == metrics
    assert data["config"]["arguments"] == config["arguments"]
    assert data["config"]["phases"] == config["phases"]
    assert data["diagnosis"] == diagnose_run(out).to_dict()
    assert f">{data['diagnosis']['verdict']}<" in text
    assert f"{metrics['best_val_loss']:.4f}" in text
    assert f"{data['evaluation']['accuracy']:.4f}" in text


def test_names_from_folders_and_configs_are_escaped(written):
    text = written[1]
    assert "<b>&x" not in text and "<b>" not in text
    assert "&lt;b&gt;&amp;x" in text


def test_a_failed_write_leaves_the_old_report(trained, written, monkeypatch):
    _, _, out = trained
    before = (out / "report.html").read_bytes(), (out / "report.json").read_bytes()
    # No evaluation (tested above); a page that cannot be written fails after
    # report.json's temporary file is complete, before either is renamed.
    monkeypatch.setattr(report_module, "_evaluate", lambda *args: (None, [], []))
    monkeypatch.setattr(report_module, "_render", lambda report: None)
    with pytest.raises(TypeError):
        write_report(out, worst=0)
    assert ((out / "report.html").read_bytes(), (out / "report.json").read_bytes()) == before
    assert not [p for p in os.listdir(out) if p.startswith(".")]


def test_a_linear_head_run_has_no_diagnosis(tmp_path):
    # --val-split, so no validation folder to evaluate on: no model to load either.
    data = make_folder(tmp_path / "data", n=6)
    out = tmp_path / "run"
    assert run("train", data, "--out", out, *HEAD_ONLY, "--head", "logreg") == 0
    assert run("report", out) == 0
    text = (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_text())
    assert data["diagnosis"] is None and ">Diagnosis<" not in text
    assert data["evaluation"] is None and data["worst"] is None and ">Evaluation<" not in text
    assert data["metrics"]["C"] == json.loads((out / "config.json").read_text())["C"]
    assert len(_page(text).images) == 1  # the C search plot
    assert "C (inverse regularization)" in text and ">Curves<" in text


def test_a_cv_run_has_a_fold_table_and_no_evaluation(tmp_path):
    # A cv run folder as `transferkit cv` writes it (no model): nothing to train here.
    out = tmp_path / "cv"
    out.mkdir()
    folds = [{"fold": k, "train_images": 6, "val_images": 6, "best_epoch": 2,
              "best_val_accuracy": a, "best_val_loss": v} for k, a, v in
             ((1, 0.75, 0.5), (2, 0.25, 0.7))]
    metrics = {"folds": folds, "mean": {"best_val_accuracy": 0.5, "best_val_loss": 0.6},
               "std": {"best_val_accuracy": 0.3536, "best_val_loss": 0.1414}, "images": 12,
               "skipped_files": ["<i>bad.jpg"], "seconds": 3.0}
    history = {"history": {"loss": [0.7, 0.6], "val_loss": [0.7, 0.6]}, "phases": []}
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "history.json").write_text(json.dumps({"folds": [history, history]}))
    (out / "config.json").write_text(json.dumps({
        "command": "cv", "arguments": {"data_dir": str(tmp_path / "imgs"), "folds": 2},
        "class_names": list(CLASSES), "image_size": [32, 32], "backbone": "mobilenet_v3_small",
        "head": "softmax"}))
    write_report(out)
    text = (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_text())
    assert data["folds"]["folds"] == folds and data["folds"]["std"] == metrics["std"]
    assert len(data["diagnosis"]) == 2 and ">Fold 2<" in text and ">Folds<" in text
    assert "0.5000 ± 0.3536" in text and "&lt;i&gt;bad.jpg" in text
    assert data["evaluation"] is None and not _page(text).images  # no curves.png here
    with pytest.raises(ValueError, match="cv run"):
        write_report(out, data_dir=tmp_path)


def test_bad_input_exits_2(trained, tmp_path, capsys):
    _, _, out = trained
    assert run("report", tmp_path / "missing") == 2
    assert "No run folder" in capsys.readouterr().err
    assert run("report", out, "--worst", "-1") == 2
    assert "--worst" in capsys.readouterr().err
    assert run("report", out, "--data", tmp_path / "nowhere") == 2
    assert "No such image folder" in capsys.readouterr().err
    other = make_folder(tmp_path / "other", n=2, classes=("green", "red"))
    assert run("report", out, "--data", other) == 2
    assert "green" in capsys.readouterr().err
    with pytest.raises(ValueError, match="worst"):
        write_report(out, worst=True)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
def test_chromium_renders_the_report(trained, written, tmp_path):
    _, _, out = trained
    png = tmp_path / "report.png"
    result = subprocess.run(["bash", SCRIPT, str(out), str(png)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) \
        == (1200, 2400)
    assert png.stat().st_size > 50_000  # a blank page compresses to a few kB
