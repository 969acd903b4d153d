"""computenet agent."""
