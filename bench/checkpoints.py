"""What resumability costs: a two-phase fine-tune with and without per-epoch checkpoints.

On ../shared/data/hymenoptera (245 training, 153 validation photos) with
`efficientnet_lite0` at 224 px, no augmentation, dropout 0.2, batch 32:
`FineTuner` with a head phase (cached features) and a fine-tuning phase
(`blocks:2`), first as plain Keras `fit` runs it (its own shuffle, no
checkpoint), then with a `PartialRun` (`transferkit.training.resume`), as
`train` runs it: a checkpoint of weights, best weights, optimizer state and
history after every epoch, and each epoch seeded from `(seed, phase,
epoch)`. The two alternate, `--repeats` times each (the first run of a
process pays warm-up costs); prints each wall time, the ratio of the
fastest runs, the checkpoint size, and both validation accuracies.

    .venv/bin/python bench/checkpoints.py [--epochs 4,4] [--repeats 2] [--data DIR]
"""

import argparse
import pathlib
import sys
import tempfile
import time

from common import add_data_argument, hymenoptera

SIZE, BATCH, SEED = 224, 32, 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--epochs", default="4,4", help="epochs of the two phases")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each")
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    head, tune = (int(e) for e in args.epochs.split(","))
    import keras

    import transferkit
    from transferkit.training.recipe import FineTuner, Phase
    from transferkit.training.resume import PartialRun

    x, y = transferkit.scan_image_folder(data / "train").load(SIZE, crop=None)
    x_val, y_val = transferkit.scan_image_folder(data / "val").load(SIZE, crop=None)
    phases = [Phase(head, 3e-3, "none"), Phase(tune, 3e-5, "blocks:2")]

    def model():
        keras.utils.set_random_seed(SEED)
        return transferkit.build("efficientnet_lite0", 2, input_shape=(SIZE, SIZE, 3),
                                 dropout=0.2)

    model()  # weights converted and cached before any clock starts
    results = {"plain": [], "checkpointed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in ("plain", "checkpointed"):
                folder = pathlib.Path(tmp) / f"run-{repeat}.partial"
                partial = PartialRun(folder, {}, seed=SEED) if name == "checkpointed" else None
                tuned = model()
                start = time.perf_counter()
                tuner = FineTuner(phases, batch_size=BATCH, seed=SEED, verbose=0,
                                  partial=partial)
                tuner.fit(tuned, x, y, validation_data=(x_val, y_val))
                seconds = time.perf_counter() - start
                results[name].append(seconds)
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) \
                    if partial else 0
                print(f"{name:>12}: {seconds:6.1f} s, best val_accuracy "
                      f"{max(tuner.history_['val_accuracy']):.4f}"
                      + (f", checkpoint {size / 2**20:.0f} MiB" if partial else ""), flush=True)
    print(f"checkpointed / plain (fastest of {args.repeats} each): "
          f"{min(results['checkpointed']) / min(results['plain']):.2f}x ({head}+{tune} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
