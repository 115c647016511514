"""Optimizers by spec, learning-rate schedules and the learning-rate finder."""
