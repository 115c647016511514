"""The fixed costs of `transferkit train`: the whole command, this code vs a baseline commit.

On ../shared/data/hymenoptera (245 training, 153 validation photos):
`transferkit train train/ --val val/ --backbone efficientnet_lite0 --head
logreg --image-size 224 --out <fresh folder>` (the size given, so both
versions read the same pixels: a linear head's default size is now the
backbone's `linear_size`), timed as a whole process (start-up, decoding,
feature extraction, the C search, saving, the report). Each run has a fresh
`--out` and no `--cache-dir`, so each extracts the features: the same work
for both. The baseline is the code at `--base` (by default the last commit
before `train`'s report reused its validation scores instead of loading the
model and decoding the images again), checked out in a git worktree and run
by the same virtual environment through `PYTHONPATH`. The two alternate,
`--repeats` times each; prints each wall time, the medians, the ratio
new/old and both runs' validation accuracy from report.json.

    flock /tmp/bench.lock .venv/bin/python bench/fixed_costs.py [--repeats 3] [--base COMMIT]
"""

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

from common import (
    REPO,
    add_data_argument,
    check_imports,
    hymenoptera,
    python_on,
    worktree,
)

BASE = "3cae6286215859c9e6e9a7ce13146e8fe9bf9ad4"
WORKTREE = pathlib.Path("/tmp/fixed-costs-base")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each")
    parser.add_argument("--base", default=BASE, help="the baseline commit")
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    with worktree(args.base, WORKTREE) as base:
        sources = {"old": base, "new": REPO / "src"}
        check_imports(sources)  # each runs its own code
        seconds = {name: [] for name in sources}
        accuracy = {}
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                for name, src in sources.items():
                    out = pathlib.Path(tmp) / f"{name}-{repeat}"
                    start = time.perf_counter()
                    python_on(src, "-m", "transferkit.cli", "train", data / "train",
                              "--val", data / "val", "--backbone", "efficientnet_lite0",
                              "--head", "logreg", "--image-size", "224", "--out", out)
                    seconds[name].append(time.perf_counter() - start)
                    report = json.loads((out / "report.json").read_text())
                    accuracy[name] = report["evaluation"]["accuracy"]
                    print(f"{name} run {repeat + 1}: {seconds[name][-1]:6.2f} s", flush=True)
    old, new = (statistics.median(seconds[name]) for name in ("old", "new"))
    print(f"median old ({args.base[:7]}): {old:6.2f} s  report accuracy {accuracy['old']:.4f}")
    print(f"median new (working tree): {new:6.2f} s  report accuracy {accuracy['new']:.4f}")
    print(f"ratio new / old: {new / old:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
