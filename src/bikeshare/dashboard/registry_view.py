"""Model metadata from the MLflow registry, read in the background so that no page waits for MLflow.

Importing MLflow and opening its store takes seconds of CPU that would hold the dashboard's GIL, so
:class:`RegistryLoader` runs ``python -m bikeshare.dashboard.registry_view`` in a child process
(settings passed as ``BIKESHARE_*`` variables) and reads its JSON answer. The Model health page
shows the lake's panels at once and the registry panel as soon as the loader has a snapshot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from bikeshare.resources import Resources
from bikeshare.settings import Settings, load_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

TARGETS: tuple[str, ...] = ("bikes", "docks")
ALIASES: tuple[str, ...] = ("production", "staging")
# Training-time metrics of a version's run shown beside it (training.report.flat_metrics names).
RUN_METRICS: dict[str, str] = {
    "all_model_pr_auc": "test PR-AUC",
    "all_model_f1": "test F1",
    "all_pr_auc_lift": "lift vs persistence",
    "onsets_pr_auc_lift": "lift on onsets",
}
COLUMNS = ["target", "alias", "model_name", "version", "threshold", *RUN_METRICS.values(), "run_id"]


def registry_snapshot(client: MlflowClient, settings: Settings) -> pd.DataFrame:
    """One row per target and alias: the version holding it (None when nobody does), threshold, metrics."""
    from bikeshare.registry.client import alias_holder, model_name

    rows = []
    for target in TARGETS:
        name = model_name(settings.city, target)
        for alias in ALIASES:
            holder = alias_holder(client, name, alias)
            row: dict[str, object] = {"target": target, "alias": alias, "model_name": name, "version": None}
            if holder is not None:
                row.update(version=holder.version, run_id=holder.run_id)
                if holder.run_id:
                    run = client.get_run(holder.run_id)
                    threshold = run.data.params.get("bundle.decision_threshold")
                    row["threshold"] = float(threshold) if threshold is not None else None
                    for key, label in RUN_METRICS.items():
                        row[label] = run.data.metrics.get(key)
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


@dataclass
class RegistryLoader:
    """Keeps the newest registry snapshot; refreshes it on a background thread when it is stale."""

    settings: Settings
    max_age_s: float
    timeout_s: float = 120.0
    snapshot: pd.DataFrame | None = None
    error: str | None = None
    loaded_at: float | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def poll(self) -> tuple[pd.DataFrame | None, str | None, bool]:
        """(snapshot, error, loading): start a refresh when none runs and the snapshot is stale."""
        with self._lock:
            stale = self.loaded_at is None or time.monotonic() - self.loaded_at > self.max_age_s
            loading = self._thread is not None and self._thread.is_alive()
            if stale and not loading:
                self._thread = threading.Thread(target=self._load, name="dashboard-registry", daemon=True)
                self._thread.start()
                loading = True
            return self.snapshot, self.error, loading

    def wait(self, timeout_s: float) -> bool:
        """Block until the running refresh ends (tests and benchmarks); True when none is running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    def _load(self) -> None:
        from bikeshare.dashboard.launch import settings_env

        snapshot: pd.DataFrame | None = None
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bikeshare.dashboard.registry_view"],
                env=settings_env(self.settings),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
            answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
            if "rows" in answer:
                snapshot, error = pd.DataFrame(answer["rows"]).reindex(columns=COLUMNS), None
            else:
                error = answer.get("error") or f"exit {done.returncode}: {done.stderr.strip()[-500:]}"
        except subprocess.TimeoutExpired:
            error = f"no answer within {self.timeout_s:.0f} s"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            if snapshot is not None:
                self.snapshot = snapshot
            self.error = error
            self.loaded_at = time.monotonic()


def main() -> None:
    """Child process: print the registry snapshot as one JSON line (``rows`` or ``error``)."""
    try:
        resources = Resources.build(load_settings())
        frame = registry_snapshot(resources.registry(), resources.settings)
    except Exception as exc:  # the parent shows it on the page
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(3)
    print(json.dumps({"rows": json.loads(frame.to_json(orient="records"))}))


if __name__ == "__main__":
    main()
