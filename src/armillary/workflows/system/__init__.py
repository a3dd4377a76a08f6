"""The engine's state for administrators: the task queue and the workers."""
