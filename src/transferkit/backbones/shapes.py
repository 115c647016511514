"""Checking the input shape a backbone is asked for: images, or token ids.

Below the loaders (`loading`, `hub`, `text`), which all check shapes the
same way and import nothing from one another for it.
"""

from transferkit.errors import TransferkitError

DEFAULT_SEQUENCE_LENGTH = 256  # sentence-transformers' max_seq_length for MiniLM-L6
# BERT's position embeddings: the longest sequence when a backbone does not say.
MAX_SEQUENCE_LENGTH = 512


def as_shape(input_shape):
    """`input_shape` as a tuple of ints (or `None`s), or a one-line error.

    Args:
        input_shape: an iterable of ints or `None`s, without the batch axis.

    Raises:
        TransferkitError: not an iterable of ints.

    Example:

    >>> as_shape([224, 224.0, 3])
    (224, 224, 3)
    """
    try:
        return tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise TransferkitError(
            f"input_shape must be a tuple like (224, 224, 3); got {input_shape!r}."
        ) from None


def checked_sequence_length(label, input_shape, backbone=None):
    """The sequence length from `input_shape` (`(length,)`), or the default 256.

    Args:
        label: the backbone's name, for error messages.
        input_shape: `(sequence_length,)`, `(None,)` or `None` (default
            length).
        backbone: optional KerasHub backbone whose `max_sequence_length`
            bounds the length. Defaults to `None` (BERT's 512).

    Raises:
        TransferkitError: not `(length,)` with `2 <= length <= limit`.

    Example:

    >>> checked_sequence_length("minilm_l6", (128,))
    128
    """
    if input_shape is None:
        return DEFAULT_SEQUENCE_LENGTH
    limit = getattr(backbone, "max_sequence_length", None) or MAX_SEQUENCE_LENGTH
    try:
        (length,) = tuple(input_shape)
        length = None if length is None else int(length)
    except (TypeError, ValueError):
        length = -1
    if length is not None and not 2 <= length <= limit:
        raise TransferkitError(
            f"{label} takes token ids: input_shape must be (sequence_length,) with 2 <= "
            f"sequence_length <= {limit}, or (None,); got {input_shape!r}."
        )
    return length
