"""Training members: the plan, the engine and runner, the pure train step, checkpoints
and the results store."""
