"""computenet Python SDK."""
