"""The x402 facilitator: `/supported`, `/verify` and `/settle` as the x402 v2 facilitator API,
for the `exact` scheme with EIP-3009 on the configured networks (the local anvil included)."""
