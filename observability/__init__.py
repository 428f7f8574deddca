"""Metrics, JSON logs and the error log: importable by every layer, importing none of ours."""
