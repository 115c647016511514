"""Labels from a table: a multi-label and a regression target made from hymenoptera.

Each photo of ../shared/data/hymenoptera gets targets computed from the data
alone, so they are known exactly and anyone can rebuild them:

- multi-label, three 0/1 columns: `ant` and `bee` (its class folder) and
  `green`: at least `GREEN_SHARE` of its pixels are green (G > R + 10 and
  G > B + 10, on the photo shrunk to 64x64 with Pillow's bilinear filter);
- regression: `brightness`, the mean luma (0.299 R + 0.587 G + 0.114 B, ITU-R
  BT.601, 0-255) of the RGB photo at full size.

The photos are linked (not copied) into one folder per split with a
`labels.csv`; `transferkit train` runs on each table with the default head
(a linear model on frozen features) and, with `--network`, the fine-tuned
network (`--head softmax`), and prints the validation figures of
metrics.json next to the baselines: always predicting each label's training
rate (multi-label) or the training mean (regression).

    flock /tmp/bench.lock .venv/bin/python bench/labels.py [--network]
"""

import argparse
import csv
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from common import add_data_argument, hymenoptera
from PIL import Image

GREEN_SHARE = 0.2


def targets(path):
    """`(green, brightness)` of one photo, as the module docstring defines them."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    pixels = np.asarray(rgb, dtype="float64")
    brightness = float((pixels @ [0.299, 0.587, 0.114]).mean())
    small = np.asarray(rgb.resize((64, 64), Image.Resampling.BILINEAR), dtype="int16")
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    green = float(((g > r + 10) & (g > b + 10)).mean()) >= GREEN_SHARE
    return int(green), brightness


def labelled_folder(source, root):
    """`root` with `source`'s photos linked flat and `multilabel.csv`, `brightness.csv`."""
    root.mkdir(parents=True)
    rows = []
    for label in ("ants", "bees"):
        for file in sorted((source / label).iterdir()):
            name = f"{label}_{file.name}"
            (root / name).symlink_to(file.resolve())
            green, brightness = targets(file)
            rows.append((name, int(label == "ants"), int(label == "bees"), green, brightness))
    with open(root.parent / f"{root.name}-multilabel.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "ant", "bee", "green"])
        writer.writerows(row[:4] for row in rows)
    with open(root.parent / f"{root.name}-brightness.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "brightness"])
        writer.writerows((row[0], f"{row[4]:.3f}") for row in rows)
    return np.array([row[1:4] for row in rows]), np.array([row[4] for row in rows])


def train(data, table, val, val_table, out, *options):
    subprocess.run([sys.executable, "-m", "transferkit.cli", "train", str(data), "--labels",
                    str(table), "--val", str(val), "--val-labels", str(val_table),
                    "--backbone", "efficientnet_lite0", "--out", str(out), *options],
                   check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--network", action="store_true",
                        help="also fine-tune the network (--head softmax), minutes")
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        labels, values = labelled_folder(data / "train", tmp / "train")
        val_labels, val_values = labelled_folder(data / "val", tmp / "val")
        print(f"labels (train / val positives): ant {labels[:, 0].sum()}/{val_labels[:, 0].sum()}"
              f", bee {labels[:, 1].sum()}/{val_labels[:, 1].sum()}, green "
              f"{labels[:, 2].sum()}/{val_labels[:, 2].sum()}; brightness train mean "
              f"{values.mean():.1f} (std {values.std():.1f})")
        baseline_mae = float(np.abs(val_values - values.mean()).mean())
        baseline_rmse = float(np.sqrt(((val_values - values.mean()) ** 2).mean()))
        heads = [("default", ())] + ([("softmax", ("--head", "softmax"))] if args.network else [])
        print("| target | head | figures on hymenoptera/val |")
        print("|---|---|---|")
        print(f"| brightness | mean of train (baseline) | MAE {baseline_mae:.2f}, RMSE "
              f"{baseline_rmse:.2f}, R² 0 |")
        for name, options in heads:
            m = train(tmp / "train", tmp / "train-brightness.csv", tmp / "val",
                      tmp / "val-brightness.csv", tmp / f"bright-{name}", *options)
            print(f"| brightness | {name} | MAE {m['val_mae']:.2f}, RMSE {m['val_rmse']:.2f}, "
                  f"R² {m['val_r2']:.4f} ({m['seconds']:.0f} s) |")
        for name, options in heads:
            m = train(tmp / "train", tmp / "train-multilabel.csv", tmp / "val",
                      tmp / "val-multilabel.csv", tmp / f"multi-{name}", *options)
            per = ", ".join(f"{k} F1 {v['f1']:.3f} AP {v['average_precision']:.3f}"
                            for k, v in m["val_per_label"].items())
            print(f"| ant, bee, green | {name} | micro-F1 {m['val_micro_f1']:.4f}, macro-F1 "
                  f"{m['val_macro_f1']:.4f}, mAP {m['val_mean_average_precision']:.4f}; {per} "
                  f"({m['seconds']:.0f} s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
