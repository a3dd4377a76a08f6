"""Running task attempts: the executor interface and the local fork-server executor."""
