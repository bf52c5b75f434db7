"""Lake: paths, partitions, atomic Parquet writes and DuckDB views."""
