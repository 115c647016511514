"""Feature extraction in float32 vs Keras' `mixed_bfloat16` policy, on this CPU.

Whether bfloat16 inference would speed up the frozen backbone's forward pass
(the compute bound of `train --head logreg` and of the cached head phase).
Each policy runs in a fresh process (a global Keras policy cannot be undone
cleanly): efficientnet_lite0 at 224 px, `extract_features` on 384 random
images in batches of 32 after a warm-up; prints images/s per policy, their
ratio, and how far the bfloat16 features are from the float32 ones.

    flock /tmp/bench.lock .venv/bin/python bench/precision.py
"""

import json
import subprocess
import sys
import tempfile
import time

POLICIES = ("float32", "mixed_bfloat16")
IMAGES, BATCH, SIZE = 384, 32, 224


def measure(policy, path):
    import keras
    import numpy as np

    import transferkit

    keras.mixed_precision.set_global_policy(policy)
    model = transferkit.build("efficientnet_lite0", 2, input_shape=(SIZE, SIZE, 3))
    extractor = transferkit.feature_extractor(model)
    x = np.random.default_rng(0).integers(0, 256, (IMAGES, SIZE, SIZE, 3), dtype=np.uint8)
    transferkit.extract_features(extractor, x[:2 * BATCH], batch_size=BATCH)  # traced
    start = time.perf_counter()
    features = transferkit.extract_features(extractor, x, batch_size=BATCH)
    seconds = time.perf_counter() - start
    np.save(path, np.asarray(features, dtype=np.float32))
    print(json.dumps({"policy": policy, "rate": IMAGES / seconds}))


def main():
    import numpy as np

    rates, features = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for policy in POLICIES:
            path = f"{folder}/{policy}.npy"
            done = subprocess.run([sys.executable, __file__, policy, path], check=True,
                                  capture_output=True, text=True)
            rates[policy] = json.loads(done.stdout.strip().splitlines()[-1])["rate"]
            features[policy] = np.load(path)
    a, b = features["float32"], features["mixed_bfloat16"]
    for policy in POLICIES:
        print(f"{policy}: {rates[policy]:.1f} img/s")
    print(f"mixed_bfloat16 / float32 speed: {rates['mixed_bfloat16'] / rates['float32']:.2f}x")
    print(f"largest difference / largest value: {np.abs(a - b).max() / np.abs(a).max():.4f}; "
          f"cosine: {(a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()):.4f}")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        measure(*sys.argv[1:])
    else:
        main()
