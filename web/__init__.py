"""The aiohttp application the Ingress starts: the Tianwang API, operator endpoints, files, /metrics, OpenAPI and
the console (its page and script in static/, package data)."""
