"""Public holidays of the system's country, as local dates for the feature SQL."""

from __future__ import annotations

from datetime import date


def _country_by_timezone() -> dict[str, str]:
    import pytz  # ships the IANA zone table; a dependency of meteostat

    out: dict[str, str] = {}
    for country, zones in pytz.country_timezones.items():
        for zone in zones:
            out.setdefault(zone, country.upper())
    return out


def country_of_timezone(timezone: str) -> str:
    """ISO 3166 country code of an IANA time zone, e.g. ``America/Los_Angeles`` -> ``US``."""
    country = _country_by_timezone().get(timezone)
    if country is None:
        raise ValueError(
            f"cannot tell the country of time zone {timezone!r}; "
            "set holiday_country (e.g. BIKESHARE_HOLIDAY_COUNTRY=FR)"
        )
    return country


def holiday_dates(country: str, years: range) -> list[date]:
    """Public holidays of ``country`` (national, no subdivision) in ``years``, sorted."""
    import holidays

    try:
        calendar = holidays.country_holidays(country, years=list(years))
    except NotImplementedError as exc:
        raise ValueError(f"the holidays package has no calendar for country {country!r}") from exc
    return sorted(calendar.keys())
