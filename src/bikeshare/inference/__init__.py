"""Batch scoring against the endpoint and the actuals feedback loop."""
