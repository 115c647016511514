"""Data augmentation as Keras layers: flips, shifts, rotations, zooms, contrast,
Keras' RandAugment and random erasing, and Keras' MixUp and CutMix.

The layers go inside the model, in front of the backbone, so they run on the
accelerator, are saved with the model (built-in layers only: a `.keras` file
reloads in safe mode), and act only in training: at inference
(`model.predict`, `model(x, training=False)`) they pass images through
unchanged. Images are RGB floats in [0, 255], what transferkit models take.

MixUp and CutMix mix pairs of images *and their labels*, so they cannot live
in the model: `Augmentation.mixing()` gives a `transferkit.data.mixing.Mixing`
that the training pipeline applies to each batch (one-hot labels, class
weights mixed alike) before the model's own layers; `build` leaves them out.
Keras' AugMix runs there too, seeded per batch: inside a model, Keras 3.15
would draw its operations once, with Python's `random`, when TensorFlow
traces the graph.

A spec names what to apply; what it does not name is off:

    True or "default"   flip=horizontal, shift=0.1, rotate=0.05, zoom=0.1, contrast=0.1
    False, None, "none" no augmentation
    "flip=horizontal,rotate=0.1,shift=0.1,zoom=0.2,contrast=0.2"   (command line)
    "flip=horizontal,randaugment=0.5,erasing=0.25"                  (Keras' policies)
    "flip=horizontal,mixup=0.2,cutmix=1,augmix=0.3"                (mixed batches)
    {"flip": "horizontal", "rotate": 0.1}                          (Python, config.json)

The strings are transferkit's one spec grammar (`transferkit.specs`), with
key=value settings and no name (or the names `default` and `none` alone).
Reading and checking a spec (`parse`, `describe`) needs no Keras: only
`Augmentation.build`, which makes the layers, imports it.
"""

import dataclasses
import math

from transferkit import specs
from transferkit.errors import TransferkitError

FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")
# Each amount's valid range, and what it means.
_AMOUNTS = {
    "shift": (0.0, 1.0, False, "shift up to this fraction of the height and width"),
    "rotate": (0.0, 0.5, True, "rotate up to this fraction of a full turn (0.05 = 18 degrees)"),
    "zoom": (0.0, 1.0, False, "zoom in or out by up to this fraction"),
    "contrast": (0.0, 1.0, True, "scale the contrast by a factor in [1 - c, 1 + c]"),
    "randaugment": (0.0, 1.0, True, "RandAugment: two random operations an image, of this "
                    "strength"),
    "erasing": (0.0, 1.0, True, "erase a random rectangle (2-33 % of the image) with this "
                "probability"),
    # Keras 3.15 documents both in [0, 1]; CutMix refuses more.
    "mixup": (0.0, 1.0, True, "MixUp: alpha of the Beta(alpha, alpha) mixing weight"),
    "cutmix": (0.0, 1.0, True, "CutMix: the Beta distribution's alpha is drawn in [0, this]"),
    "augmix": (0.0, 1.0, True, "AugMix: the image mixed with chains of Keras' operations, "
               "of this severity"),
}
# Applied to batches in the data pipeline, not in the model: MixUp and CutMix
# mix labels; Keras' AugMix draws its operations with Python's `random`, which
# the pipeline seeds per batch (in a traced model they would be drawn once).
MIXING = ("mixup", "cutmix", "augmix")
KEYS = ("flip",) + tuple(_AMOUNTS)
_VALID_KEYS = (
    f"valid keys: flip ({', '.join(FLIPS)} or none), "
    + ", ".join(f"{key} (a number in [0, {high:g}{']' if closed else ')'})"
                for key, (_, high, closed, _) in _AMOUNTS.items())
)
NAME = "augment"
_USAGE = (
    "key=value pairs separated by commas, such as 'flip=horizontal,rotate=0.1', or "
    f"'default' or 'none' ({_VALID_KEYS})"
)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Which random transformations to apply in training, and how strongly.

    Every transformation is off by default; `Augmentation.default()` is the
    usual set for photos.

    Args:
        flip: `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"`, or
            `None` (default) for no flips.
        shift: shift images by up to this fraction of their height and width,
            in [0, 1). Defaults to 0.
        rotate: rotate by up to this fraction of a full turn, either way, in
            [0, 0.5]: 0.05 is 18 degrees. Defaults to 0.
        zoom: zoom in or out by up to this fraction, in [0, 1), keeping the
            aspect ratio. Defaults to 0.
        contrast: multiply each image's contrast by a random factor in
            `[1 - contrast, 1 + contrast]`, in [0, 1]. Defaults to 0.
        randaugment: Keras' `RandAugment`: two operations drawn per image
            from its list (colour, geometry, ...), at this strength in
            [0, 1]. Defaults to 0 (off).
        erasing: Keras' `RandomErasing`: the probability, in [0, 1], that a
            random rectangle of 2-33 % of the image is replaced by noise.
            Defaults to 0 (off).
        mixup: Keras' `MixUp`: `alpha`, in [0, 1], of the Beta(alpha, alpha)
            weight `lam` of `lam * a + (1 - lam) * b` for images and labels.
            Defaults to 0 (off). Not in the model: see `mixing`.
        cutmix: Keras' `CutMix`: `factor`, in [0, 1]: a rectangle of another
            image is pasted in, the labels mixed by area. Defaults to 0 (off).
            Not in the model: see `mixing`.
        augmix: Keras' `AugMix`: `factor`, in [0, 1], the severity of its
            operations; three chains of one to three operations, mixed with
            Dirichlet weights, then with the image (Hendrycks et al. 2020; no
            consistency loss). Keras draws the chains once a batch. Defaults
            to 0 (off). Not in the model: see `mixing`.

    Shifted, rotated and zoomed-out images are filled by reflection.

    Example:

    >>> augmentation = Augmentation(flip="horizontal", rotate=0.1)
    >>> [layer.name for layer in augmentation.build(seed=0).layers]
    ['flip', 'rotate']
    """

    flip: str | None = None
    shift: float = 0.0
    rotate: float = 0.0
    zoom: float = 0.0
    contrast: float = 0.0
    randaugment: float = 0.0
    erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    augmix: float = 0.0

    def __post_init__(self):
        flip = self.flip
        if isinstance(flip, str) and flip.strip().lower() in FLIPS + ("none",):
            flip = flip.strip().lower()
        if flip is not None and flip not in FLIPS + ("none",):
            raise TransferkitError(
                f"Invalid flip {self.flip!r}: use one of {', '.join(FLIPS)}, or none."
            )
        object.__setattr__(self, "flip", None if flip == "none" else flip)
        for key in _AMOUNTS:
            object.__setattr__(self, key, _amount(key, getattr(self, key)))

    @classmethod
    def default(cls):
        """Horizontal flips, shift 0.1, rotate 0.05 (18 degrees), zoom 0.1, contrast 0.1."""
        return cls(flip="horizontal", shift=0.1, rotate=0.05, zoom=0.1, contrast=0.1)

    def is_off(self):
        """`True` when nothing would be applied."""
        return self.flip is None and not any(getattr(self, key) for key in _AMOUNTS)

    def in_model(self):
        """The transformations that go inside the model (all but MixUp, CutMix, AugMix).

        Example:

        >>> Augmentation(flip="horizontal", mixup=0.2).in_model()
        Augmentation(flip='horizontal', shift=0.0, rotate=0.0, zoom=0.0, contrast=0.0, \
randaugment=0.0, erasing=0.0, mixup=0.0, cutmix=0.0, augmix=0.0)
        """
        return dataclasses.replace(self, **dict.fromkeys(MIXING, 0.0))

    def mixing(self):
        """The `transferkit.data.mixing.Mixing` of `mixup`, `cutmix` and `augmix`, or `None`.

        Example:

        >>> Augmentation(mixup=0.2).mixing()
        Mixing(mixup=0.2, cutmix=0, augmix=0)
        """
        if not any(getattr(self, key) for key in MIXING):
            return None
        from transferkit.data.mixing import Mixing

        return Mixing(self.mixup, self.cutmix, self.augmix)

    def describe(self):
        """The settings as a JSON-able dict, which `get_augmentation` takes back."""
        return dataclasses.asdict(self)

    def build(self, seed=None):
        """A `keras.Sequential` named `"augment"` of the layers that are on.

        MixUp and CutMix are not among them (see `mixing`).

        Args:
            seed: an integer for repeatable randomness (layer `i` gets
                `seed + i`), or `None` (default).
        """
        import keras  # here, not at the top: checking a spec needs no Keras

        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TransferkitError(f"Invalid seed {seed!r}: use an integer, or None.")
        layers = []

        def next_seed():
            return None if seed is None else seed + len(layers)

        if self.flip:
            layers.append(keras.layers.RandomFlip(self.flip, seed=next_seed(), name="flip"))
        if self.shift:
            layers.append(keras.layers.RandomTranslation(
                self.shift, self.shift, fill_mode="reflect", seed=next_seed(), name="shift"))
        if self.rotate:
            layers.append(keras.layers.RandomRotation(
                self.rotate, fill_mode="reflect", seed=next_seed(), name="rotate"))
        if self.zoom:
            # width_factor=None zooms both sides alike, keeping the aspect ratio.
            layers.append(keras.layers.RandomZoom(
                self.zoom, width_factor=None, fill_mode="reflect", seed=next_seed(),
                name="zoom"))
        if self.contrast:
            # A pair: a single float c gives factors in [1, 1 + c] only (Keras
            # 3.15 clips the lower bound at 0), never lowering the contrast.
            layers.append(keras.layers.RandomContrast(
                (self.contrast, self.contrast), value_range=(0, 255), seed=next_seed(),
                name="contrast"))
        if self.randaugment:
            layers.append(keras.layers.RandAugment(
                value_range=(0, 255), factor=self.randaugment, seed=next_seed(),
                name="randaugment"))
        if self.erasing:
            # Last: what it erases is not transformed again.
            layers.append(keras.layers.RandomErasing(
                factor=self.erasing, value_range=(0, 255), seed=next_seed(), name="erasing"))
        return keras.Sequential(layers, name=NAME)


def get_augmentation(spec, seed=None):
    """The augmentation layers for a spec, or `None` for no augmentation.

    MixUp and CutMix are not layers of the model: `parse(spec).mixing()`.

    Args:
        spec: `True` or `"default"` (`Augmentation.default()`); `False`,
            `None` or `"none"` (off); an `Augmentation`; a dict such as
            `{"flip": "horizontal", "rotate": 0.1}`; or the same as a string,
            `"flip=horizontal,rotate=0.1"`. Keys that a dict or string leaves
            out are off.
        seed: an integer for repeatable randomness, or `None` (default).

    Returns:
        A `keras.Sequential` named `"augment"`, or `None` (also when only
        `mixup` or `cutmix` is on).

    Example:

    >>> augment = get_augmentation("flip=horizontal,shift=0.1,zoom=0.2", seed=1)
    >>> [layer.name for layer in augment.layers]
    ['flip', 'shift', 'zoom']
    >>> get_augmentation("none") is None
    True
    """
    augmentation = parse(spec)
    if augmentation is None or augmentation.in_model().is_off():
        return None
    return augmentation.build(seed=seed)


def describe(spec):
    """A spec's settings as a JSON-able dict for a config file, `None` when off.

    Example:

    >>> describe("rotate=0.1")
    {'flip': None, 'shift': 0.0, 'rotate': 0.1, 'zoom': 0.0, 'contrast': 0.0, \
'randaugment': 0.0, 'erasing': 0.0, 'mixup': 0.0, 'cutmix': 0.0, 'augmix': 0.0}
    """
    augmentation = parse(spec)
    return None if augmentation is None else augmentation.describe()


def get(identifier):
    """Returns the `Augmentation` of an augmentation identifier, or `None` when off.

    Args:
        identifier: one of

            - `None`, `False` or `"none"`: no augmentation (`None`);
            - `True` or `"default"`: `Augmentation.default()`;
            - an `Augmentation`, returned as it is (`None` when it is off);
            - a spec string of key=value settings,
              `"flip=horizontal,rotate=0.1"`;
            - a dict, what `Augmentation.describe()` returns:
              `{"flip": "horizontal", "rotate": 0.1}`.

            Keys that a dict or string leaves out are off.

    Returns:
        An `Augmentation`, or `None` when nothing would be applied.

    Example:

    >>> get("flip=horizontal,rotate=0.1") == Augmentation(flip="horizontal", rotate=0.1)
    True
    >>> get({"rotate": 0.0}) is None
    True
    """
    return parse(identifier)


def parse(spec):
    """The `Augmentation` for a spec (see `get`), `None` when off."""
    if isinstance(spec, Augmentation):
        augmentation = spec
    elif spec is True:
        augmentation = Augmentation.default()
    elif spec is None or spec is False:
        return None
    elif isinstance(spec, str):
        augmentation = _parse_string(spec)
    elif isinstance(spec, dict):
        augmentation = _from_dict(spec, spec)
    else:
        raise TransferkitError(
            f"Invalid augmentation {spec!r}: use True, 'default', 'none', an Augmentation, "
            "a dict or a string such as 'flip=horizontal,rotate=0.1'."
        )
    return None if augmentation is None or augmentation.is_off() else augmentation


def _parse_string(spec):
    parsed = specs.parse(spec, what="augmentation", usage=_USAGE, positional=False)
    if parsed.name is not None:
        if parsed.kwargs or parsed.name not in ("default", "true", "none", "false"):
            raise TransferkitError(f"Invalid augmentation {spec!r}: write {_USAGE}.")
        return Augmentation.default() if parsed.name in ("default", "true") else None
    # The values as written: `Augmentation` reads them, and its messages quote them.
    return _from_dict(parsed.raw_kwargs, spec)


def _from_dict(settings, spec):
    unknown = [key for key in settings if key not in KEYS]
    if unknown:
        raise TransferkitError(
            f"Unknown augmentation key(s) {', '.join(map(repr, unknown))} in "
            f"{spec!r}; {_VALID_KEYS}."
        )
    return Augmentation(**settings)


def _amount(key, value):
    low, high, closed, meaning = _AMOUNTS[key]
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (low <= number <= high) or (number == high and not closed):
        bracket = "]" if closed else ")"
        raise TransferkitError(
            f"Invalid {key}={value!r}: use a number in [{low:g}, {high:g}{bracket} "
            f"({meaning})."
        )
    return number
