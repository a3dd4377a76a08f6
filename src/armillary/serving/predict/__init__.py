"""Predictions: the predict, feedback and analysis routes, the Open Inference Protocol v2
routes, the prediction log and request sampling."""
