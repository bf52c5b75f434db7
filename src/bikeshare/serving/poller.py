"""The background poll shared by the registry-backed model providers (30-minute and forecast)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class ModelPoller:
    """Calls :meth:`refresh` every ``poll_s`` seconds on a daemon thread between :meth:`start` and :meth:`close`.

    A subclass says what one poll does (``refresh``, which must not raise for a registry outage);
    a surprise inside it is logged and the loaded models keep serving.
    """

    thread_name = "model-poll"

    def __init__(self, *, poll_s: float) -> None:
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any surprise; the old models keep serving
                log.exception("%s failed; keeping the loaded models", self.thread_name)
