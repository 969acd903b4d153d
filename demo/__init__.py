"""The whole network end to end on one machine (`make demo`)."""
