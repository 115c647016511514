"""Seed 003 on digits: when does reusing model A pay for task B (issue 20)?

Model A (three dense hidden layers) learns 8 digits; task B tells the other
two apart from n images, trained from scratch and on A's cloned layers. Per
seed, A trains once and every B size and variant shares it; the test images
of a seed are the same for every size. Prints mean +- std test accuracy over
the seeds for each size and variant.

    .venv/bin/python bench/transfer_digits.py [--seeds 0,1,2,3,4] [--sizes 20,50,200]
        [--variants recipe,steps] [--probe]

Variants (each trains B from scratch and on A with the same settings):
  recipe      the recipe before issue 20: batch 32, 10 + 20 epochs, lr 1e-2 then 1e-3
  steps       recipe, batch size min(32, n // 8): at least 8 optimizer steps per epoch
  batch4      recipe, with batch size 4 at every n
  head-lr3    recipe, head phase at 3e-2
  val10       recipe, 10 validation images instead of 50
  last        recipe, the last epoch kept (no best-epoch choice on validation)
  cut2, cut1  recipe, B reuses A up to hidden2 (hidden1) only, both variants
`--probe` adds a logistic regression (scikit-learn) on A's last hidden layer's
features vs on the raw pixels: do A's features separate B's digits at all?
"""

import argparse
import sys
import time

import numpy as np

VARIANTS = {
    "recipe": {},
    "steps": {"min_steps": 8},  # batch size min(32, n // 8)
    "batch4": {"batch_size": 4},
    "head-lr3": {"head_learning_rate": 3e-2},
    "val10": {"val_size": 10},
    "last": {"keep": "last"},
    "cut2": {"cut_at": "hidden2"},
    "cut1": {"cut_at": "hidden1"},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--sizes", default="20,50,200")
    parser.add_argument("--variants", default="recipe,steps")
    parser.add_argument("--classes", default="5,9")
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    classes = tuple(int(c) for c in args.classes.split(","))
    import keras

    from transferkit.models.transfer import reuse
    from transferkit.training.recipe import FineTuner, Phase, default_recipe
    from transferkit.workflows.transfer_demo import digits_tasks, train_model_a

    scores = {}  # (variant, size, kind) -> accuracies over seeds
    start = time.perf_counter()
    for seed in seeds:
        tasks = digits_tasks(classes, seed, max(sizes))
        model_a, accuracy_a, _ = train_model_a(tasks, seed)
        print(f"seed {seed}: A's test accuracy {accuracy_a:.4f}", flush=True)
        for name in variants:
            options = dict(VARIANTS[name])
            val_size = options.pop("val_size", 50)
            keep = options.pop("keep", "best")
            head_rate = options.pop("head_learning_rate", 1e-2)
            cut_at = options.pop("cut_at", None)
            min_steps = options.pop("min_steps", None)
            for size in sizes:
                x, y = tasks.b_train[0][:size], tasks.b_train[1][:size]
                if min_steps:
                    options["batch_size"] = max(1, min(32, size // min_steps))
                val = tuple(v[:val_size] for v in tasks.b_val)
                for kind in ("scratch", "on_a"):
                    keras.utils.set_random_seed(seed)  # the same head (and scratch) init
                    model_b = reuse(model_a, 2, output="binary", cut_at=cut_at,
                                    from_scratch=kind == "scratch")
                    phases = [Phase(30, 1e-2, "all")] if kind == "scratch" else \
                        default_recipe((10, 20), head_rate, fine_tune_factor=1e-2 / head_rate / 10)
                    tuner = FineTuner(phases, patience=None, seed=seed, verbose=0, **options)
                    if keep == "last":
                        tuner.fit(model_b, x, y)  # monitor "loss": ~ the last epoch
                    else:
                        tuner.fit(model_b, x, y, validation_data=val)
                    accuracy = float(model_b.evaluate(*tasks.b_test, verbose=0)[1])
                    scores.setdefault((name, size, kind), []).append(accuracy)
            line = ", ".join(f"n={s}: {scores[name, s, 'scratch'][-1]:.3f}/"
                             f"{scores[name, s, 'on_a'][-1]:.3f}" for s in sizes)
            print(f"  {name} (scratch/on A): {line}", flush=True)
        if args.probe:
            _probe(keras, model_a, tasks, sizes, scores)
    print(f"\n{len(seeds)} seeds ({args.seeds}), classes {classes}, test accuracy mean +- std, "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| variant | n | from scratch | on A | on A - scratch |")
    print("|---|---|---|---|---|")
    for name in variants + (["probe"] if args.probe else []):
        for size in sizes:
            a, b = np.array(scores[name, size, "scratch"]), np.array(scores[name, size, "on_a"])
            print(f"| {name} | {size} | {a.mean():.4f} +- {a.std():.4f} | "
                  f"{b.mean():.4f} +- {b.std():.4f} | {np.mean(b - a):+.4f} |")
    return 0


def _probe(keras, model_a, tasks, sizes, scores):
    """Logistic regression on pixels ("scratch") and on A's last hidden features ("on_a")."""
    from sklearn.linear_model import LogisticRegression

    trunk = keras.Model(model_a.inputs, model_a.layers[-2].output)
    for size in sizes:
        x, y = tasks.b_train[0][:size], tasks.b_train[1][:size]
        for kind, f in (("scratch", lambda v: v),
                        ("on_a", lambda v: trunk.predict(v, verbose=0))):
            fit = LogisticRegression(max_iter=2000).fit(f(x), y)
            scores.setdefault(("probe", size, kind), []).append(
                float(fit.score(f(tasks.b_test[0]), tasks.b_test[1])))


if __name__ == "__main__":
    sys.exit(main())
