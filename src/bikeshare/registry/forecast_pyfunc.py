"""The MLflow pyfunc face of a forecast bundle: station feature rows in, one row per station and horizon out.

Shipped inside the logged model next to ``training/forecast_bundle.py``, so it must stay importable
with numpy, pandas, lightgbm and mlflow alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from bikeshare.training.forecast_bundle import OUTPUT_COLUMNS, ForecastBundle


class ForecastPyfunc(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame holding the bundle's ``feature_names`` (and optionally ``station_id``)."""

    def __init__(self, num_threads: int = 1) -> None:
        self.num_threads = num_threads
        self._bundle: ForecastBundle | None = None

    def load_context(self, context: Any) -> None:
        self._bundle = ForecastBundle.load(Path(context.artifacts["bundle"]), num_threads=self.num_threads)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self._bundle is None:
            raise RuntimeError("the forecast bundle is not loaded (load_context was not called)")
        return self._bundle.curve(model_input)


def forecast_signature(feature_names: tuple[str, ...]) -> Any:
    """Every feature a double column in (``station_id`` optional); the curve's columns out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    outputs = [
        ColSpec("string" if c == "station_id" else "long" if c == "horizon_min" else "double", c)
        for c in OUTPUT_COLUMNS
    ]
    return ModelSignature(inputs=Schema([ColSpec("double", name) for name in feature_names]), outputs=Schema(outputs))
