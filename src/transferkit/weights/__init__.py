"""Readers for pretrained weights published outside Keras."""

from transferkit.weights.torch_pickle import (
    DEFAULT_MAX_BYTES,
    UnsafePickleError,
    load_torch_state_dict,
)

__all__ = ["DEFAULT_MAX_BYTES", "UnsafePickleError", "load_torch_state_dict"]
