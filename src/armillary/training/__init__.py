"""The training service: the ``train`` and ``evaluate`` task types (and the SageMaker
backend)."""
