// Turning what the wallet, the chain and the gateway say into one plain sentence.

export const REJECTED = "You rejected the request in your wallet.";

/** A user-facing error: its message is meant to be shown as it is. */
export class PlainError extends Error {}

/** The sentence for a contract's revert `reason` (config.reverts, computenet/explain.py's table). */
export function explainRevert(reason, reverts = {}) {
  if (!reason) return "The contract refused the call without saying why.";
  return reverts[reason] ?? `The contract refused: ${reason}`;
}

/** Every error in a cause chain (viem nests the wallet's under its own). */
function* chain(error) {
  for (let e = error, depth = 0; e && depth < 20; e = e.cause, depth++) yield e;
}

export function isRejection(error) {
  for (const e of chain(error)) if (e.code === 4001 || e.name === "UserRejectedRequestError") return true;
  return false;
}

/** The revert string of a failed eth_call, or null when the error is not a revert. */
export function revertReason(error) {
  for (const e of chain(error)) {
    if (e.name === "ContractFunctionRevertedError") return e.reason ?? e.data?.args?.[0] ?? "";
    if (typeof e.reason === "string" && e.reason) return e.reason;
  }
  return null;
}

/** The plain sentence for any error the page meets. */
export function plainMessage(error, reverts = {}) {
  if (error instanceof PlainError) return error.message;
  if (isRejection(error)) return REJECTED;
  const reason = revertReason(error);
  if (reason !== null) return explainRevert(reason, reverts);
  return error?.shortMessage || error?.message || String(error);
}
