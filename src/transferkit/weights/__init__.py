"""Readers for pretrained weights published outside Keras."""

from transferkit.weights.torch_pickle import UnsafePickleError, load_torch_state_dict

__all__ = ["UnsafePickleError", "load_torch_state_dict"]
