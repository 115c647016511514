"""Head training on a frozen backbone: plain Keras `fit` vs transferkit's cached features.

On ../shared/data/hymenoptera (245 training, 153 validation photos) with
`efficientnet_lite0` at 224 px, no augmentation, dropout 0.2: 10 epochs of
the head (Adam 1e-3, batch 32, validation every epoch) on the frozen
backbone, first with plain `model.fit` through the backbone, then with
`FineTuner(cache=True)` (feature extraction included in its time). Then
seed 001's bottleneck path: the same features (extraction timed again) with
a linear SVM and a logistic regression, C chosen by 5-fold cross-validation
on the training features (`transferkit.training.linear.LinearHead`). Prints each
path's wall time and validation accuracy, and the plain/cached ratio.

    .venv/bin/python bench/frozen_phase.py [--epochs 10] [--data DIR]
"""

import argparse
import sys
import time

from common import add_data_argument, hymenoptera

SIZE, BATCH, RATE, SEED = 224, 32, 1e-3, 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    data = hymenoptera(args.data)
    if data is None:
        return 2
    import keras
    import numpy as np

    import transferkit
    from transferkit.training.features import extract_features, feature_extractor
    from transferkit.training.linear import LinearHead
    from transferkit.training.recipe import FineTuner, Phase

    x, y = transferkit.scan_image_folder(data / "train").load(SIZE, crop=None)
    x_val, y_val = transferkit.scan_image_folder(data / "val").load(SIZE, crop=None)

    def model():
        keras.utils.set_random_seed(SEED)
        return transferkit.build("efficientnet_lite0", 2, input_shape=(SIZE, SIZE, 3),
                                 dropout=0.2)

    plain_model = model()  # built (and weights converted) before any clock starts
    start = time.perf_counter()
    plain_model.get_layer("backbone").trainable = False
    plain_model.compile(keras.optimizers.Adam(RATE), "sparse_categorical_crossentropy",
                        metrics=["accuracy"])
    plain = plain_model.fit(x, y, batch_size=BATCH, epochs=args.epochs,
                            validation_data=(x_val, y_val), verbose=2).history
    plain_seconds = time.perf_counter() - start

    cached_model = model()
    start = time.perf_counter()
    tuner = FineTuner([Phase(args.epochs, RATE, "none", name="head")], batch_size=BATCH,
                      patience=None, seed=SEED, cache=True, verbose=2)
    tuner.fit(cached_model, x, y, validation_data=(x_val, y_val))
    cached_seconds = time.perf_counter() - start
    cached = tuner.history_

    linear = {}
    for kind in ("linear-svm", "logreg"):
        extractor = feature_extractor(model())
        start = time.perf_counter()
        features, val_features = (extract_features(extractor, v, batch_size=BATCH)
                                  for v in (x, x_val))
        head = LinearHead(kind, seed=SEED).fit(features, y)
        scores = keras.ops.convert_to_numpy(head.to_layer()(val_features))
        linear[kind] = (time.perf_counter() - start, np.mean(scores.argmax(1) == y_val), head)

    print(f"{len(x)} training, {len(x_val)} validation photos at {SIZE} px; "
          f"{args.epochs} epochs of the head, backbone frozen, no augmentation")
    print(f"plain fit:       {plain_seconds:7.1f} s  val_accuracy last "
          f"{plain['val_accuracy'][-1]:.4f}, best {max(plain['val_accuracy']):.4f}")
    print(f"cached features: {cached_seconds:7.1f} s  val_accuracy last "
          f"{cached['val_accuracy'][-1]:.4f}, best {max(cached['val_accuracy']):.4f} "
          f"(extraction included)")
    print(f"ratio plain / cached: {plain_seconds / cached_seconds:.1f}x")
    print(f"final val_accuracy of the kept weights: "
          f"{np.mean(cached_model.predict(x_val, verbose=0).argmax(1) == y_val):.4f}")
    for kind, (seconds, accuracy, head) in linear.items():
        print(f"{kind + ':':17s}{seconds:7.1f} s  val_accuracy {accuracy:.4f} (C={head.C_:g}, "
              f"{head.folds_}-fold CV accuracy {head.cv_accuracy_:.4f}; extraction included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
