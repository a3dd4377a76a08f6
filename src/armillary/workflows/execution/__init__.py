"""Running task attempts: the executor interface and the local bubblewrap executor."""
