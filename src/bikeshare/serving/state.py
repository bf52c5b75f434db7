"""What the routes share: one typed object on ``app.state.endpoint``, built once by ``create_app``.

Routes reach it through :func:`endpoint_state` (a FastAPI dependency) or, on the scoring hot path,
:func:`endpoint_of` (the same object without the dependency machinery).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from fastapi import Request

from bikeshare.enums import Alias
from bikeshare.registry.client import model_name
from bikeshare.serving.errors import ApiError
from bikeshare.serving.forecast import ForecastProvider, LatestForecasts
from bikeshare.serving.metrics import ServingMetrics
from bikeshare.serving.models import ModelProvider, ModelSet
from bikeshare.serving.risk import LatestInference

if TYPE_CHECKING:
    from bikeshare.lake.store import Lake
    from bikeshare.monitoring.acks import AlertStore
    from bikeshare.settings import Settings


@dataclass
class EndpointState:
    """Settings, model sources, lake readers and metrics of one endpoint process."""

    settings: Settings
    provider: ModelProvider
    forecaster: ForecastProvider
    lake: Lake
    metrics: ServingMetrics
    risk: LatestInference
    forecasts: LatestForecasts
    rng: random.Random
    pool: ThreadPoolExecutor | None  # scores docks beside bikes for large batches
    started_at: float = field(default_factory=time.time)

    @property
    def city(self) -> str:
        return self.settings.city

    @cached_property
    def default_alias(self) -> str:
        return str(self.settings.serve_alias)

    @cached_property
    def canary_share(self) -> float:
        return self.settings.serve_canary_share if self.default_alias == Alias.PRODUCTION else 0.0

    @cached_property
    def max_rows(self) -> int:
        return self.settings.serve_max_batch_rows

    @cached_property
    def parallel_rows(self) -> int:
        return self.settings.serve_parallel_min_rows

    @cached_property
    def alerts(self) -> AlertStore:
        """The city's alert store (monitoring is imported on the first acknowledgement, not at start)."""
        from bikeshare.monitoring.acks import AlertStore

        return AlertStore(self.lake, city=self.city)

    def pick_alias(self, pinned: Alias | None) -> tuple[str, ModelSet | None]:
        """The alias answering a request: the pinned one, else the canary draw, else the served alias."""
        if pinned is not None:
            return pinned.value, self.provider.current(pinned.value)
        if self.canary_share > 0.0 and self.rng.random() < self.canary_share:
            staging = self.provider.current(Alias.STAGING.value)
            if staging is not None:
                return Alias.STAGING.value, staging
        return self.default_alias, self.provider.current(self.default_alias)

    def scoring_features(self) -> tuple[str, ...] | None:
        """Every feature some loaded alias needs (what an /invocations body must carry), None when none is loaded."""
        sets = self.provider.state().sets
        if not sets:
            return None
        names: dict[str, None] = {}
        for alias in Alias:
            if (models := sets.get(alias.value)) is not None:
                names.update(dict.fromkeys(models.features))
        return tuple(names)

    def forecast_features(self) -> tuple[str, ...] | None:
        """Every feature a loaded forecast model needs, None when none is loaded."""
        names: dict[str, None] = {}
        for alias in Alias:
            if (loaded := self.forecaster.current(alias.value)) is not None:
                names.update(dict.fromkeys(loaded.bundle.meta.feature_names))
        return tuple(names) or None

    # --- the refusals the routes share -------------------------------------------------------

    def no_model(self, alias: str) -> ApiError:
        state = self.provider.state()
        missing = ", ".join(model_name(self.city, t) for t in state.missing(alias)) or "none"
        how = (
            f"run `bikeshare train` and `bikeshare promote --to {alias}`"
            if state.source == "registry"
            else f"put bikes/ and docks/ bundles under {state.location}"
        )
        return ApiError(
            503, "no_model", f"no {alias} model is loaded (missing: {missing}; source {state.location}): {how}"
        )

    def no_forecast_model(self, alias: str) -> ApiError:
        name = model_name(self.city, "forecast")
        return ApiError(
            503,
            "no_forecast_model",
            f"no {alias} forecast model is loaded (missing: {name}; source {self.forecaster.location}): run "
            f"`bikeshare forecast train` and `bikeshare forecast promote --to {alias}`",
        )

    def no_inference(self) -> ApiError:
        return ApiError(
            503,
            "no_inference",
            f"no {self.default_alias} inference batch in the lake for city {self.city!r} yet: run `bikeshare infer`",
        )

    def no_forecast(self) -> ApiError:
        name = model_name(self.city, "forecast")
        return ApiError(
            503,
            "no_forecast",
            f"no {self.default_alias} forecast in the lake for city {self.city!r} yet: train and promote "
            f"{name} (`bikeshare forecast train`), then run `bikeshare infer`",
        )


def endpoint_of(request: Request) -> EndpointState:
    state: EndpointState = request.app.state.endpoint
    return state


async def endpoint_state(request: Request) -> EndpointState:
    """FastAPI dependency: the endpoint's shared state (async, so it never costs a thread hop)."""
    return endpoint_of(request)
