"""Verification by re-execution: running a shard again, as an agent would, to learn its true result."""
