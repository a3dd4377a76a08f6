"""Project code bundles: Python files and zip archives that ``python`` tasks run."""
