"""The tracking service: experiments and runs per project, served through MLflow's REST API
(ADR 0037) so the MLflow client logs to Armillary unchanged."""
