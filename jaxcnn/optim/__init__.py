"""Optimizers: the seed's Adam with PyTorch's rules, any Optax optimizer, schedules,
regularizers."""
