"""Text end to end (issue 16): IMDB with 2,000 training reviews, five ways.

Seed 004's data (`../shared/data/imdb`): 2,000 training reviews drawn from
the 25,000 (seeded, stratified: 1,000 of each class) and 5,000 test reviews
from the 25,000 test reviews (the same way), written as JSONL files. On that
split, each method in a fresh process (wall time and peak RSS by `os.wait4`),
its test accuracy on the 5,000:

    multihot   seed 004's network: 10,000-word multi-hot vectors, Dense(16) -
               Dense(16) - Dense(1), RMSprop, batch 512, the epoch of the
               lowest loss on a 20 % validation split (early stopping,
               patience 4, best weights), `transferkit.data.MultiHot`
    tfidf      TF-IDF of words and word pairs (sublinear tf, min_df 2) +
               scikit-learn's LogisticRegressionCV (10 Cs, 5 folds)
    logreg     `transferkit train train.jsonl --backbone minilm_l6 --head logreg`
               (frozen MiniLM embeddings, C by cross-validation)
    default    `transferkit train train.jsonl --backbone minilm_l6`: the defaults
    lora       the same with `--lora 8` (its default rates: the adapters at 3e-4)
    lora-3e-4  `--lora 8 --lr 1e-3,3e-4`, the rates explicit

then `transferkit evaluate RUN test.jsonl --json` for the three CLI runs
(timed apart). Prints a Markdown table; `--json FILE` keeps the figures.

    flock /tmp/bench.lock .venv/bin/python bench/text_imdb.py [--methods multihot,tfidf]
        [--train 2000] [--test 5000] [--seed 0] [--data ../shared/data/imdb]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

IMDB = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("multihot", "tfidf", "logreg", "default", "lora", "lora-3e-4")
CLI_OPTIONS = {"logreg": ["--head", "logreg"], "default": [], "lora": ["--lora", "8"],
               "lora-3e-4": ["--lora", "8", "--lr", "1e-3,3e-4"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS[:5]))
    parser.add_argument("--train", type=int, default=2000, help="training reviews")
    parser.add_argument("--test", type=int, default=5000, help="test reviews")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(IMDB))
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--fit-only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fit_only:  # internal: one in-process method, in its own process
        print("RESULT " + json.dumps(IN_PROCESS[args.fit_only](pathlib.Path(args.work),
                                                                args.seed)), flush=True)
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    data = pathlib.Path(args.data)
    if not (data / "imdb_train.jsonl.gz").is_file():
        print(f"No IMDB data at {data} (imdb_train.jsonl.gz, imdb_test.jsonl.gz).",
              file=sys.stderr)
        return 2
    results = {}
    with tempfile.TemporaryDirectory(prefix="text-imdb-") as tmp:
        work = pathlib.Path(tmp)
        write_split(data, work, args.train, args.test, args.seed)
        for method in methods:
            results[method] = run(method, work, args.seed)
            print(f"{method}: {json.dumps(results[method])}", flush=True)
    table(results, args)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"train": args.train, "test": args.test, "seed": args.seed, "results": results},
            indent=1) + "\n")
    return 0


def write_split(data, work, n_train, n_test, seed):
    """`work/train.jsonl` and `work/test.jsonl`: stratified, seeded samples."""
    sys.path.insert(0, str(REPO / "src"))
    from transferkit.data import read_texts

    rng = np.random.default_rng(seed)
    for name, source, n in (("train", "imdb_train", n_train), ("test", "imdb_test", n_test)):
        texts, labels, _ = read_texts(data / f"{source}.jsonl.gz")
        chosen = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(labels == c), n // 2 + (c < n % 2), replace=False)
            for c in (0, 1)]))
        with open(work / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in chosen:
                f.write(json.dumps({"text": texts[i], "label": int(labels[i])}) + "\n")


def run(method, work, seed):
    if method in IN_PROCESS:
        seconds, rss, out = measured([sys.executable, __file__, "--fit-only", method,
                                      "--work", str(work), "--seed", str(seed)])
        result = json.loads(next(line for line in out.splitlines()
                                 if line.startswith("RESULT "))[len("RESULT "):])
        return {**result, "seconds": round(seconds, 1), "rss_mib": round(rss / 1024)}
    out_dir = work / f"run-{method}"
    seconds, rss, _ = measured([sys.executable, "-m", "transferkit.cli", "train",
                                str(work / "train.jsonl"), "--backbone", "minilm_l6",
                                "--out", str(out_dir), "--seed", str(seed),
                                *CLI_OPTIONS[method]])
    eval_seconds, eval_rss, out = measured([sys.executable, "-m", "transferkit.cli",
                                            "evaluate", str(out_dir), str(work / "test.jsonl"),
                                            "--json"])
    figures = json.loads(out[out.index("{"):])
    metrics = json.loads((out_dir / "metrics.json").read_text())
    config = json.loads((out_dir / "config.json").read_text())
    return {"test_accuracy": round(figures["accuracy"], 4),
            "val_accuracy": round(metrics.get("best_val_accuracy", float("nan")), 4),
            "max_length": config.get("max_length"), "head": config.get("head"),
            "seconds": round(seconds, 1), "rss_mib": round(rss / 1024),
            "evaluate_seconds": round(eval_seconds, 1), "evaluate_rss_mib": round(eval_rss / 1024)}


def measured(command):
    """Runs `command` (the repo's `src` first on the path): seconds, peak RSS KiB, stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text = out.read()
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
    return seconds, usage.ru_maxrss, text


def _read(work, name):
    from transferkit.data import read_texts

    texts, labels, _ = read_texts(work / f"{name}.jsonl")
    return texts, labels


def fit_multihot(work, seed):
    import keras

    from transferkit.data import MultiHot

    (texts, y), (test_texts, test_y) = _read(work, "train"), _read(work, "test")
    vectorizer = MultiHot(10000).fit(texts)
    x, x_test = vectorizer.transform(texts), vectorizer.transform(test_texts)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.RMSprop(1e-3), "binary_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)
    history = model.fit(x, y.astype("float32"), validation_split=0.2, epochs=30,
                        batch_size=512, verbose=0, callbacks=[stop])
    p = model.predict(x_test, verbose=0)[:, 0]
    return {"test_accuracy": round(float(np.mean((p > 0.5) == test_y)), 4),
            "epochs": len(history.history["loss"])}


def fit_tfidf(work, seed):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    (texts, y), (test_texts, test_y) = _read(work, "train"), _read(work, "test")
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    x = vectorizer.fit_transform(texts)
    model = LogisticRegressionCV(Cs=10, cv=5, max_iter=5000, random_state=seed).fit(x, y)
    accuracy = float(np.mean(model.predict(vectorizer.transform(test_texts)) == test_y))
    return {"test_accuracy": round(accuracy, 4), "C": float(model.C_[0])}


IN_PROCESS = {"multihot": fit_multihot, "tfidf": fit_tfidf}


def table(results, args):
    print(f"\nIMDB, {args.train:,} training reviews, {args.test:,} test reviews, seed "
          f"{args.seed}\n")
    print("| method | test accuracy | train wall (s) | train peak RSS (MiB) "
          "| evaluate wall (s) | evaluate peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for method, r in results.items():
        print(f"| {method} | {r['test_accuracy']:.4f} | {r['seconds']:.1f} | {r['rss_mib']:,} "
              f"| {r.get('evaluate_seconds', '-')} | {r.get('evaluate_rss_mib', '-')} |")


if __name__ == "__main__":
    sys.exit(main())
