"""computenet keepers."""
