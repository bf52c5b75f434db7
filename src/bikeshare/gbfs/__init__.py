"""GBFS: feed client, v1.0-v3.0 normalisation, recordings and the replay server."""
