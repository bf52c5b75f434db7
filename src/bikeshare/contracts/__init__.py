"""The data contract: Pandera schemas over normalised GBFS frames and the batch/row verdicts."""
