"""Hourly weather from Meteostat 2 for the station nearest the system's centre.

- :mod:`bikeshare.weather.stage`: the stage (``fetch_weather``, ``write_weather``) over a ``WeatherSource``.
- :mod:`bikeshare.weather.meteostat_source`: the Meteostat adapter and its scoped ``MS_*`` settings.
- :mod:`bikeshare.weather.mirror`: writes a local Meteostat mirror (stations.db, hourly CSVs).
- :mod:`bikeshare.weather.job`: what ``bikeshare weather fetch`` runs.
"""
