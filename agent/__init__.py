"""The computenet GPU agent: runs assigned shards in Docker and submits signed, Merkle-committed results."""
