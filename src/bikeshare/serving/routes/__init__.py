"""The endpoint's routers: ops (ping, healthz, metrics), scoring, product (/v1/...) and alerts."""
