"""The operations dashboard (Streamlit): reads the lake through its DuckDB views and the MLflow registry.

``app.py`` is the entry (``bikeshare dashboard`` runs ``streamlit run`` on it); the pages live in
``pages/``; every query is a named function of :mod:`bikeshare.dashboard.queries`.
"""
