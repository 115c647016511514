"""Skewed classes: hymenoptera with 10 ants for each bee, with and without `--class-weight balanced`.

The training folder keeps every ant and a seeded 10 % as many bees (symbolic
links to ../shared/data/hymenoptera/train, nothing copied); the validation
folder is untouched (balanced). For each subset (`--subsets` seeds) `transferkit
train` runs with the default head (a logistic regression on the frozen
features for this little data) and, for the first subset, the two-phase
network (`--head softmax`), each without and with `--class-weight balanced`,
and the network with `--balanced-batches` instead (the rare class drawn as
often as the other; a linear head has no batches); prints validation
balanced accuracy and macro-F1 from metrics.json, and the means.
`--heads` and `--weightings` run some of these rows only.

    flock /tmp/bench.lock .venv/bin/python bench/imbalance.py [--subsets 3]
    flock /tmp/bench.lock .venv/bin/python bench/imbalance.py --subsets 1 \
        --heads softmax --weightings batches
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from common import add_data_argument, hymenoptera

RATIO = 10
HEADS = {"default head": [], "softmax": ["--head", "softmax"]}
# How the rare class is made to count: the options of each row.
WEIGHTINGS = {"none": ["--class-weight", "none"], "balanced": ["--class-weight", "balanced"],
              "batches": ["--balanced-batches"]}


def skewed_folder(source, root, seed):
    """`root` with every ant of `source` and `len(ants) // RATIO` bees drawn with `seed`."""
    ants = sorted((source / "ants").iterdir())
    bees = sorted((source / "bees").iterdir())
    keep = np.random.default_rng(seed).choice(len(bees), len(ants) // RATIO, replace=False)
    for name, files in (("ants", ants), ("bees", [bees[i] for i in sorted(keep)])):
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file.name).symlink_to(file.resolve())
    return len(ants), len(keep)


def train(data, val, out, *options):
    subprocess.run([sys.executable, "-m", "transferkit.cli", "train", str(data), "--val",
                    str(val), "--backbone", "efficientnet_lite0", "--no-report", "--out",
                    str(out), *options], check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics["val_balanced_accuracy"], metrics["val_macro_f1"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--subsets", type=int, default=3, help="bee subsets (seeds)")
    parser.add_argument("--heads", default="default,softmax",
                        help="heads to run: default, softmax (the network: first subset only)")
    parser.add_argument("--weightings", default=",".join(WEIGHTINGS),
                        help="none, balanced (class weights), batches (--balanced-batches, "
                        "softmax only)")
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for seed in range(args.subsets):
            folder = tmp / f"skewed-{seed}"
            ants, bees = skewed_folder(data / "train", folder, seed)
            heads = [(head, options) for head, options in HEADS.items()
                     if head.split()[0] in args.heads.split(",")
                     and (head == "default head" or seed == 0)]
            for head, options in heads:
                for weighting in args.weightings.split(","):
                    if weighting == "batches" and head != "softmax":
                        continue  # a linear head has no batches
                    out = tmp / f"run-{seed}-{head[:7]}-{weighting}"
                    figures = train(folder, data / "val", out, *options,
                                    *WEIGHTINGS[weighting])
                    results.setdefault((head, weighting), []).append(figures)
                    how = "balanced batches" if weighting == "batches" \
                        else f"class weight {weighting}"
                    print(f"subset {seed} ({ants} ants, {bees} bees), {head}, {how}: balanced "
                          f"accuracy {figures[0]:.4f}, macro-F1 {figures[1]:.4f}", flush=True)
    for (head, weighting), rows in results.items():
        print(f"mean over {len(rows)}: {head}, {weighting}: balanced accuracy "
              f"{statistics.mean(r[0] for r in rows):.4f}, macro-F1 "
              f"{statistics.mean(r[1] for r in rows):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
