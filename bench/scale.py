"""Scale: peak memory and throughput of `transferkit train` at 2,000 and 20,000 photos.

The harness of the issue "fast at any size". Its targets, for a streaming
input pipeline to meet (today's code decodes every image into one in-memory
array): the peak RSS of `train --head logreg` and of a two-phase `train`
grows by at most 1.3x from 2,000 to 20,000 photos; decode+extract at 20,000
photos runs at least 2x today's images/s, and within 1.3x of extraction
alone on pre-decoded arrays (the compute bound).

Data: N real photos, two balanced classes (ants, bees), made from the 245
hymenoptera training photos by re-encoding varied versions of them (a random
crop of 60-100 % of the area, a horizontal flip half the time, the longest
side resized to 300-500 px, JPEG quality 85-95), seeded, under `--work`
(`photos-N/{ants,bees}/NNNNN.jpg`; a marker written last records the count
and seed, so a complete folder is reused and a half-built one rebuilt).

For each N in `--sizes` and each code version (the working tree; with
`--base COMMIT` also that commit, checked out in a git worktree and run by
the same interpreter through `PYTHONPATH`), each in a fresh process whose
peak RSS (`os.wait4`) is its own:

- `train DIR --backbone efficientnet_lite0 --head logreg --image-size 224
  --val-split 0.2 --out <fresh> --no-report`: wall time, peak RSS;
- two-phase `train DIR --backbone efficientnet_lite0 --head softmax
  --epochs 1,1 --unfreeze blocks:1 --no-augment --image-size 96 --val-split
  0.2 --out <fresh> --no-report`: wall time, peak RSS (small images and one
  epoch per phase, to keep it affordable on a 2-core CPU: it measures how
  the input pipeline's memory grows, not a recipe);
- throughput, through the library API (`--throughput-only`, one process per
  N): decode+extract images/s, the clock around
  `scan_image_folder(DIR).load(224, crop=None)` (an `ImageFiles`, streamed,
  where the code has it) and
  `extract_features(feature_extractor(model), x, batch_size=32)` over all N
  (model = `build("efficientnet_lite0", 2, input_shape=(224, 224, 3))`,
  built and warmed up first), and extraction alone on the first
  `min(N, 1000)` images decoded beforehand. When the N decoded images would
  not fit in the memory available, decode+extract is skipped and says why.

Prints a table per code version, the RSS growth ratios (largest N /
smallest N) and the throughput ratios, each beside its target.

    flock /tmp/bench.lock .venv/bin/python bench/scale.py [--sizes 2000,20000] [--base COMMIT]
    .venv/bin/python bench/scale.py --generate-only --sizes 20000   # only build the photos
"""

import argparse
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

from common import REPO, add_data_argument, check_imports, worktree

WORK = pathlib.Path("/tmp/transferkit-scale")
WORKTREE = pathlib.Path("/tmp/scale-base")
CLASSES = ("ants", "bees")
MARKER = ".complete"  # hidden, and in the root: no image folder scan reads it
FORMAT = 1  # bump when the generated photos change
SIZE, BATCH, EXTRACT_ONLY = 224, 32, 1000
BACKBONE = "efficientnet_lite0"
TRAIN = {
    "logreg": ["--head", "logreg", "--image-size", "224"],
    "two-phase": ["--head", "softmax", "--epochs", "1,1", "--unfreeze", "blocks:1",
                  "--no-augment", "--image-size", "96"],
}
TARGET_GROWTH, TARGET_SPEEDUP, TARGET_BOUND = 1.3, 2.0, 1.3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000", help="photo counts, comma-separated")
    parser.add_argument("--work", default=str(WORK), help="where the photo folders are built")
    add_data_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated photos")
    parser.add_argument("--base", default=None, help="also measure the code at this commit")
    parser.add_argument("--skip-train", action="store_true", help="no whole-process runs")
    parser.add_argument("--skip-throughput", action="store_true", help="no throughput runs")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--generate-only", action="store_true",
                        help="only build (or check) the photo folders, timed")
    parser.add_argument("--throughput-only", action="store_true",
                        help="internal: measure throughput in this process, print JSON")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or min(sizes) < 2 * len(CLASSES):
        parser.error(f"--sizes needs counts of at least {2 * len(CLASSES)}")
    work = pathlib.Path(args.work)
    if args.throughput_only:
        for n in sizes:
            print("RESULT " + json.dumps(throughput(photo_folder(work, n))), flush=True)
        return 0
    sources = _sources(pathlib.Path(args.data))
    if sources is None:
        print(f"No hymenoptera photos at {args.data} (expected train/ants, train/bees).",
              file=sys.stderr)
        return 2
    folders = {n: ensure_photos(work, n, sources, args.seed) for n in sizes}
    if args.generate_only:
        return 0

    versions = {"new": REPO / "src"}
    with contextlib.ExitStack() as stack:
        if args.base:
            versions = {"base": stack.enter_context(worktree(args.base, WORKTREE)), **versions}
        check_imports(versions)  # each runs its own code
        results = {name: {n: {} for n in sizes} for name in versions}
        for n in sizes:  # the versions alternate, so that a busier spell hits both
            for name, src in versions.items():
                row = results[name][n]
                if not args.skip_train:
                    for kind, options in TRAIN.items():
                        row[kind] = train_run(src, folders[n], options)
                        print(f"{name} N={n} {kind}: {row[kind]['seconds']:.1f} s, peak RSS "
                              f"{row[kind]['rss_mib']:.0f} MiB, best val_accuracy "
                              f"{row[kind]['val_accuracy']}", flush=True)
                if not args.skip_throughput:
                    row["throughput"] = _throughput_process(src, work, n)
                    _print_throughput(name, n, row["throughput"])
    report(results, sizes, args.base)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"sizes": sizes, "base": args.base, "results": results}, indent=1) + "\n")
    return 0


# --- the photos ---------------------------------------------------------------------------

def photo_folder(work, n):
    return pathlib.Path(work) / f"photos-{n}"


def ensure_photos(work, n, sources, seed):
    """`work/photos-N`, built unless a complete one with the same count and seed is there."""
    folder = photo_folder(work, n)
    wanted = {"count": n, "seed": seed, "format": FORMAT}
    try:
        if json.loads((folder / MARKER).read_text()) == wanted:
            print(f"{folder}: {n} photos, reused", flush=True)
            return folder
    except (OSError, ValueError):
        pass
    if folder.exists():
        shutil.rmtree(folder)  # half built, or other photos
    start = time.perf_counter()
    per_class = [n // len(CLASSES) + (c < n % len(CLASSES)) for c in range(len(CLASSES))]
    jobs = [(name, i) for c, name in enumerate(CLASSES) for i in range(per_class[c])]
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
    chunks = [jobs[i:i + 250] for i in range(0, len(jobs), 250)]
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        done = pool.map(_make_photos, [(folder, sources, seed, chunk) for chunk in chunks])
        total = sum(done)
    (folder / MARKER).write_text(json.dumps(wanted) + "\n")  # last: the folder is complete
    print(f"{folder}: {total} photos generated in {time.perf_counter() - start:.1f} s",
          flush=True)
    return folder


def _sources(data):
    files = {name: sorted(p for p in (data / "train" / name).glob("*")
                          if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
             for name in CLASSES}
    return None if not all(files.values()) else {k: [str(p) for p in v] for k, v in files.items()}


def _make_photos(task):
    """Writes one chunk of photos; each is seeded by (seed, class, index) alone."""
    from PIL import Image, ImageOps

    folder, sources, seed, chunk = task
    for name, i in chunk:
        rng = random.Random(f"{seed}:{name}:{i}")
        files = sources[name]
        with Image.open(files[i % len(files)]) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
        width, height = image.size
        area = rng.uniform(0.6, 1.0) * width * height
        ratio = (width / height) * rng.uniform(0.8, 1.25)  # a mild aspect change
        w = min(width, max(1, round((area * ratio) ** 0.5)))
        h = min(height, max(1, round((area / ratio) ** 0.5)))
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        image = image.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        longest = rng.randint(300, 500)
        scale = longest / max(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                             Image.Resampling.LANCZOS)
        image.save(folder / name / f"{i:05d}.jpg", "JPEG", quality=rng.randint(85, 95))
    return len(chunk)


# --- the measurements ---------------------------------------------------------------------

def train_run(src, folder, options):
    """One `train` in a fresh process on the code in `src`: wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="scale-run-") as tmp:
        out = pathlib.Path(tmp) / "run"
        command = [sys.executable, "-m", "transferkit.cli", "train", str(folder),
                   "--backbone", BACKBONE, *options, "--val-split", "0.2",
                   "--out", str(out), "--no-report"]
        with open(pathlib.Path(tmp) / "log.txt", "w+") as log:
            seconds, rss, code = _measured(command, src, log)
            log.seek(0)
            text = log.read()
        if code:
            raise SystemExit(f"{' '.join(command)} failed ({code}):\n{text[-3000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
    accuracy = metrics.get("best_val_accuracy", metrics.get("val_accuracy"))
    return {"seconds": seconds, "rss_mib": rss / 1024,
            "val_accuracy": None if accuracy is None else round(accuracy, 4)}


def _measured(command, src, log):
    """Runs `command`; returns (wall seconds, peak RSS in KiB, exit code)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=src.parent, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (KiB on Linux)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss, process.returncode


def _throughput_process(src, work, n):
    command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--throughput-only",
               "--sizes", str(n), "--work", str(work)]
    with tempfile.TemporaryFile("w+") as log:
        seconds, rss, code = _measured(command, src, log)
        log.seek(0)
        text = log.read()
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if code or not lines:
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{text[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "process_seconds": seconds,
            "process_rss_mib": rss / 1024}


def throughput(folder):
    """Decode+extract images/s over `folder`, and extract-only images/s; in this process."""
    import keras
    import numpy as np

    import transferkit
    from transferkit.data import images

    n = len(list(folder.glob("*/*.jpg")))
    model = transferkit.build(BACKBONE, 2, input_shape=(SIZE, SIZE, 3))
    extractor = transferkit.feature_extractor(model)
    # Traced before the clocks, for full batches and (a second shape: a shape-relaxed
    # trace) a last, partial one.
    warm = np.zeros((2 * BATCH + 7, SIZE, SIZE, 3), np.uint8)
    transferkit.extract_features(extractor, warm, batch_size=BATCH)
    result = {"n": n, "backend": keras.backend.backend()}

    k = min(n, EXTRACT_ONLY)
    files = transferkit.scan_image_folder(folder).files[:k]
    x = transferkit.load_images(files, SIZE, crop=None)  # decoded outside the clock
    start = time.perf_counter()
    transferkit.extract_features(extractor, x, batch_size=BATCH)
    seconds = time.perf_counter() - start
    result["extract_only"] = {"images": k, "seconds": seconds, "rate": k / seconds}
    del x

    width = int(extractor.outputs[0].shape[-1])
    streams = importlib.util.find_spec("transferkit.data.stream") is not None  # it streams
    # The decoded images (unless streamed), the features.
    needed = n * ((0 if streams else SIZE * SIZE * 3) + 4 * width)
    available = getattr(images, "available_memory", _available_memory)()
    if available is not None and needed > 0.9 * available:
        result["decode_extract"] = {
            "skipped": f"{n} images at {SIZE} px and their features need "
                       f"{needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available"}
        return result
    start = time.perf_counter()
    folder_scan = transferkit.scan_image_folder(folder)
    scanned = time.perf_counter()
    if streams:  # decoded batch by batch during the extraction
        from transferkit.data.stream import ImageFiles

        x = ImageFiles(folder_scan.files, SIZE, crop=None)
    else:
        x, _ = folder_scan.load(SIZE, crop=None)
    loaded = time.perf_counter()
    transferkit.extract_features(extractor, x, batch_size=BATCH)
    end = time.perf_counter()
    result["decode_extract"] = {
        "images": len(x), "seconds": end - start, "rate": len(x) / (end - start),
        "scan_s": scanned - start, "load_s": loaded - scanned, "extract_s": end - loaded}
    return result


def _available_memory():
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemAvailable:"))
    except (OSError, ValueError, StopIteration):
        return None


# --- output -------------------------------------------------------------------------------

def _print_throughput(name, n, t):
    only = t["extract_only"]
    print(f"{name} N={n} extract only: {only['images']} images in {only['seconds']:.1f} s, "
          f"{only['rate']:.1f} img/s", flush=True)
    both = t["decode_extract"]
    if "skipped" in both:
        print(f"{name} N={n} decode+extract skipped: {both['skipped']}", flush=True)
    else:
        print(f"{name} N={n} decode+extract: {both['images']} images in {both['seconds']:.1f} s "
              f"(scan {both['scan_s']:.1f}, load {both['load_s']:.1f}, extract "
              f"{both['extract_s']:.1f}), {both['rate']:.1f} img/s; process peak RSS "
              f"{t['process_rss_mib']:.0f} MiB", flush=True)


def _get(row, *keys):
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row


def _cell(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def report(results, sizes, base):
    for name, rows in results.items():
        label = f"base ({base[:10]})" if name == "base" else "new (working tree)"
        print(f"\n{label}\n")
        print("| N | logreg wall (s) | logreg peak RSS (MiB) | two-phase wall (s) "
              "| two-phase peak RSS (MiB) | decode+extract (img/s) | extract only (img/s) |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            row = rows[n]
            print(f"| {n:,} | {_cell(_get(row, 'logreg', 'seconds'))} "
                  f"| {_cell(_get(row, 'logreg', 'rss_mib'), 0)} "
                  f"| {_cell(_get(row, 'two-phase', 'seconds'))} "
                  f"| {_cell(_get(row, 'two-phase', 'rss_mib'), 0)} "
                  f"| {_cell(_get(row, 'throughput', 'decode_extract', 'rate'))} "
                  f"| {_cell(_get(row, 'throughput', 'extract_only', 'rate'))} |")
    print()
    small, large = sizes[0], sizes[-1]
    for name, rows in results.items():
        for kind in TRAIN:
            low, high = (_get(rows[n], kind, "rss_mib") for n in (small, large))
            if small == large or low is None or high is None:
                print(f"{name}: {kind} peak RSS growth: n/a (needs two sizes)")
            else:
                print(f"{name}: {kind} peak RSS growth {small:,} -> {large:,}: "
                      f"{high / low:.2f}x (issue target: <= {TARGET_GROWTH}x from 2,000 to 20,000)")
        for n in sizes:
            both = _get(rows[n], "throughput", "decode_extract", "rate")
            only = _get(rows[n], "throughput", "extract_only", "rate")
            if both is not None and only is not None:
                print(f"{name}: N={n:,} extract only / decode+extract: {only / both:.2f}x "
                      f"(issue target at 20,000: <= {TARGET_BOUND}x)")
    if "base" in results:
        for n in sizes:
            new, old = (_get(results[v][n], "throughput", "decode_extract", "rate")
                        for v in ("new", "base"))
            if new is not None and old is not None:
                print(f"N={n:,} decode+extract new / base: {new / old:.2f}x "
                      f"(issue target at 20,000: >= {TARGET_SPEEDUP}x)")


if __name__ == "__main__":
    sys.exit(main())
