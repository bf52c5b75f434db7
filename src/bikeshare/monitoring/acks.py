"""The alert store as the endpoint sees it: acknowledge an alert by id, and the two ways that fails.

This is the one module of :mod:`bikeshare.monitoring` that :mod:`bikeshare.serving` imports, and
monitoring imports nothing from serving, so the two packages have no cycle
(``tests/monitoring/test_boundaries.py`` checks both).
"""

from __future__ import annotations

from bikeshare.monitoring.alerts import AlertStateError
from bikeshare.monitoring.store import AlertNotFoundError, AlertStore, ack_alert

__all__ = ["AlertNotFoundError", "AlertStateError", "AlertStore", "ack_alert"]
