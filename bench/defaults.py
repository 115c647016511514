"""The defaults against the tuned command, on hymenoptera, through the command line.

Runs, as a user would (`python -m transferkit.cli`, one process each, so
decoding, saving and the report are in the time), on
../shared/data/hymenoptera (245 training, 153 validation photos):

1. the defaults: `train train/ --val val/ --backbone efficientnet_lite0
   --out RUN --seed S` and nothing else (`--head auto`: under 1,000 training
   images, a logistic regression on the frozen features at the backbone's
   linear size, 320 px);
2. the README's tuned two-phase command (`--epochs 8,4 --lr 3e-3,3e-5
   --unfreeze blocks:2`), the same seeds;
3. `cv train/` (5 folds) of the defaults, and of the plain linear probe
   (`--head logreg --image-size 224`).

Prints each run's best validation accuracy and wall time, the means over
the seeds, and the ratio of the mean times (defaults / tuned).

    .venv/bin/python bench/defaults.py [--seeds 0,1,2] [--data DIR]
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from common import add_data_argument, hymenoptera

BACKBONE = ["--backbone", "efficientnet_lite0"]
TUNED = ["--epochs", "8,4", "--lr", "3e-3,3e-5", "--unfreeze", "blocks:2"]
PROBE = ["--head", "logreg", "--image-size", "224"]


def cli(*args):
    """Runs `transferkit ARGS` in a fresh process; returns its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transferkit.cli", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    means = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("defaults", []), ("tuned", TUNED)):
            scores, times = [], []
            for seed in seeds:
                out = pathlib.Path(tmp) / f"{name}-{seed}"
                times.append(cli("train", data / "train", "--val", data / "val", *BACKBONE,
                                 "--out", out, "--seed", seed, *extra))
                metrics = json.loads((out / "metrics.json").read_text())
                head = json.loads((out / "config.json").read_text())["head"]
                scores.append(metrics["best_val_accuracy"])
                print(f"{name:>8} seed {seed} ({head}): best val_accuracy {scores[-1]:.4f}, "
                      f"{times[-1]:.0f} s", flush=True)
            means[name] = (statistics.mean(scores), statistics.mean(times))
            print(f"{name:>8} mean: {means[name][0]:.4f} in {means[name][1]:.0f} s per run",
                  flush=True)
        for name, extra in (("defaults", []), ("linear probe at 224 px", PROBE)):
            out = pathlib.Path(tmp) / f"cv-{len(extra)}"
            seconds = cli("cv", data / "train", *BACKBONE, "--folds", "5", "--out", out, *extra)
            mean = json.loads((out / "metrics.json").read_text())["mean"]
            print(f"cv, {name}: mean best val_accuracy {mean['best_val_accuracy']:.4f} "
                  f"({seconds:.0f} s)", flush=True)
    print(f"defaults / tuned: accuracy {means['defaults'][0]:.4f} vs {means['tuned'][0]:.4f}, "
          f"time {means['defaults'][1] / means['tuned'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
