"""Ingest: poll -> parse -> normalise -> contract -> lake, and the backfill of recordings."""
