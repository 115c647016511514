"""`lr_find`: the learning-rate finder on an image folder or a text file, with `train`'s model."""

import os

from transferkit.errors import TransferkitError
from transferkit.outputs import check_output_file
from transferkit.training.config import training_config
from transferkit.training.distribution import accepts_distribution, is_follower
from transferkit.workflows.common import (
    as_follower,
    devices_of,
    input_description,
    model_inputs,
    read_labelled,
)


@accepts_distribution
def lr_find(data_dir, backbone, plot=None, *, unfreeze="none", start=1e-7, end=10.0,
            steps=200, strict=False, overwrite=False, columns=None, verbose="auto",
            **options):
    """The LR finder on an image folder (or text file), with the model `train` would build.

    The model is `train`'s (same backbone, head, dropout, augmentation,
    inserted dropout, constraints), frozen per `unfreeze`: `"none"` (the
    default) finds the head phase's rate; a plan such as `"blocks:2"` the
    fine-tuning phase's (then train the head first: a random head's large
    gradients dominate). With the backbone frozen and no augmentation the
    finder trains the head on features computed once (same losses, far
    faster). The optimizer and batch size are `train`'s: the rate found is
    for them.

    Args:
        data_dir: images, one subfolder per class; for a text backbone, a
            labelled text file (`columns`, a `TextColumns`, says where its
            texts and labels are).
        backbone: a catalogue name.
        plot: optional `.png` path for the loss-versus-rate plot.
        unfreeze: the freeze plan while searching. Defaults to `"none"`.
        start, end, steps: the rate range and the most batches (see
            `LRFinder`).
        strict: a file that does not decode is an error instead of skipped.
        overwrite: replace an existing `plot` file. Defaults to `False`.
        distribution: a `tf.distribute.Strategy` or `keras.distribution.Distribution` you made,
            used instead of `devices` (`transferkit.training.distribution.using`). Defaults
            to `None`.
        verbose: `"auto"` shows progress. Defaults to `"auto"`.
        **options: `train`'s model options (`image_size`, `crop`, `augment`,
            `dropout`, `optimizer`, `batch_size`, `seed`, `weights`, ...).

    Returns:
        The fitted `LRFinder` (`suggestion_`, `learning_rates_`, ...).

    Example:

    >>> finder = lr_find("hymenoptera/train", "efficientnet_lite0",
    ...                  "lr_find.png", augment=False)  # doctest: +SKIP
    >>> finder.suggestion_  # doctest: +SKIP
    """
    # The rate of a trained head: "auto" is a softmax head here. An unknown
    # backbone fails before Keras is imported.
    devices = devices_of(backbone, options)
    if is_follower(devices):  # searches with process 0, which alone writes the plot
        return as_follower(lr_find, data_dir=data_dir, backbone=backbone, plot=plot,
                           unfreeze=unfreeze, start=start, end=end, steps=steps, strict=strict,
                           overwrite=overwrite, columns=columns, verbose=verbose, **options)
    config = training_config(backbone, options, "lr_find").for_data(None)
    import keras

    from transferkit.models.freezing import freeze, parse_plan
    from transferkit.optim.lr_finder import LRFinder
    from transferkit.training.features import (
        cache_refusal,
        extract_features,
        feature_extractor,
        head_model,
    )
    from transferkit.training.trainer import Trainer

    trainer = Trainer(config, verbose=verbose)
    if trainer.config.linear:
        raise TransferkitError(f"head={trainer.config.head!r} has no learning rate; the LR "
                               "finder is for the trained (softmax) head.")
    plan = parse_plan(unfreeze)
    finder = LRFinder(start, end, steps, batch_size=trainer.config.batch_size,
                      optimizer=trainer.recipe[0].optimizer, seed=trainer.config.seed,
                      verbose=trainer.bar())
    finder.check_parameters()
    if plot is not None:
        check_output_file(plot, inputs=[data_dir], overwrite=overwrite, suffix=".png",
                          flag="plot")
    folder = read_labelled(data_dir, trainer.text, strict, columns)
    if trainer.text:
        trainer = trainer.for_texts(folder.texts)
    trainer.say(f"{len(folder)} {trainer.noun}, classes {folder.class_names}; "
                f"{input_description(trainer)[0]}.")
    x, _ = model_inputs(trainer, folder)  # images streamed, texts as token ids
    y = folder.labels
    if trainer.config.seed is not None:
        keras.utils.set_random_seed(trainer.config.seed)
    where = trainer.placement
    with where.scope():
        trainer.say_placement()
        model = trainer.build_model(len(folder.class_names))
        summary = freeze(model, plan, batchnorm=trainer.config.batchnorm)
        trainer.say(f"Searching with unfreeze {plan}: {summary}.")
        target, inputs = model, x
        if plan.kind == "none" and cache_refusal(model) is None:
            target = head_model(model)
            inputs = extract_features(feature_extractor(model), x,
                                      batch_size=trainer.config.batch_size,
                                      verbose=trainer.bar())
        with where.synchronized_batchnorm(model):
            finder.fit(target, inputs, y)
    if plot is not None:
        finder.plot(plot, title=f"{trainer.backbone.name} on "
                    f"{os.path.basename(os.path.abspath(data_dir))}, unfreeze {plan}",
                    overwrite=overwrite)
    return finder
