"""The commands, as library functions: train, cross-validate, compare, find a
learning rate, the demos. Each reads data, runs the training machinery and
writes a run folder; nothing below this layer imports it."""
