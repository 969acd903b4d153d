"""The job gateway: `POST /jobs` answered with an x402 payment offer, settled through the
facilitator into the job market's escrow, bound to exactly that job."""
