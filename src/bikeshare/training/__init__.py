"""Training: datasets, models, evaluation against persistence, model cards."""
