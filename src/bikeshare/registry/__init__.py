"""MLflow adapter: tracking, registration, the promotion gate, aliases, rollback and the audit trail.

Modules import MLflow inside functions (or are imported lazily) so the CLI stays fast to start.
"""
