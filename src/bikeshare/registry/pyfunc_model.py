"""The MLflow pyfunc face of a model bundle: feature columns in, probability and decision out.

The logged model builds :class:`BundlePyfunc` from a models-from-code entry, so this module must stay importable with
only numpy, pandas, lightgbm and mlflow: the logged model ships a minimal copy of it (and of
``training/bundle.py``) as its code, which lets ``mlflow models serve`` run it without the rest of
the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from bikeshare.training.bundle import ModelBundle

PROBABILITY = "probability"
DECISION = "decision"


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame whose columns include the bundle's ``feature_names``."""

    def __init__(self, num_threads: int = 1) -> None:
        self.num_threads = num_threads
        self._bundle: ModelBundle | None = None

    def load_context(self, context: Any) -> None:
        self._bundle = ModelBundle.load(Path(context.artifacts["bundle"]), num_threads=self.num_threads)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self._bundle is None:
            raise RuntimeError("the model bundle is not loaded (load_context was not called)")
        return score_frame(self._bundle, model_input)


def score_frame(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """Probability and decision per row of ``frame``; extra columns are ignored."""
    names = list(bundle.meta.feature_names)
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"input lacks feature columns {missing} (the model needs {len(names)} columns)")
    matrix = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    proba = bundle.predict_proba(matrix)
    return pd.DataFrame({PROBABILITY: proba, DECISION: bundle.decide(proba)}, index=frame.index)


def signature_for(feature_names: tuple[str, ...]) -> Any:
    """Model signature: every feature a double column in, probability (double) and decision (boolean) out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in feature_names]),
        outputs=Schema([ColSpec("double", PROBABILITY), ColSpec("boolean", DECISION)]),
    )
