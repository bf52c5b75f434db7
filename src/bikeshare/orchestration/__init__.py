"""The loop runner (every job on its own schedule, on a real or replayed clock), the training
pipeline, and the one-command demo."""
