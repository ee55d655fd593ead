"""Models as the engine sees them: the seed CNN, a user's linen or NNX module,
initializers, the registry."""
