"""Monitoring: feature baselines and drift, alert rules, the alert engine, sinks and the alert store."""
