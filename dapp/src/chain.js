// Reads over the deployment's public RPC (no wallet needed); writes through the wallet, each
// simulated first (eth_call from the account) so a revert is explained before any prompt.
// Bare clients and imported actions (not createPublicClient's decorators) keep the bundle small.
import { createClient, custom, defineChain, http } from "viem";
import {
  getBalance,
  getBlock,
  getContractEvents,
  readContract,
  signMessage,
  signTypedData,
  simulateContract,
  waitForTransactionReceipt,
  writeContract,
} from "viem/actions";
import { PlainError, explainRevert, isRejection, plainMessage, revertReason, REJECTED } from "./errors.js";

const RECEIPT_TIMEOUT_MS = 120_000; // a dropped or replaced transaction is reported, not waited on forever
const ABI_NAMES = {
  market: "JobMarket",
  court: "DisputeCourt",
  assets: "ComputeAsset",
  keepers: "KeeperRegistry",
  token: "Token",
};

export function chainOf(config) {
  return defineChain({
    id: config.chainId,
    name: config.chainName,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [config.rpcUrl] } },
  });
}

/** {address, abi} of each deployed contract: market, court, assets, keepers, token. */
export function contractsOf(config) {
  const out = {};
  for (const [key, name] of Object.entries(ABI_NAMES))
    out[key] = { address: config.contracts[key], abi: config.abis[name], name };
  return out;
}

export function publicClientOf(config) {
  return createClient({ chain: chainOf(config), transport: http(config.rpcUrl), pollingInterval: 500 });
}

export function walletClientOf(config, provider, account) {
  return createClient({ account, chain: chainOf(config), transport: custom(provider) });
}

export function read(publicClient, contract, functionName, args = []) {
  return readContract(publicClient, { address: contract.address, abi: contract.abi, functionName, args });
}

/** The call of `fn` on `contract` from the page's account, as viem's actions take it. */
function callOf(ctx, contract, fn, args) {
  return { account: ctx.account, address: contract.address, abi: contract.abi, functionName: fn, args };
}

/** Asks the wallet (`request`); a rejection becomes the plain sentence, as does any other failure. */
async function inWallet(ctx, request) {
  try {
    return await request();
  } catch (error) {
    throw new PlainError(isRejection(error) ? REJECTED : plainMessage(error, ctx.config.reverts));
  }
}

/**
 * Simulates `fn` from `account`; a revert throws its plain sentence, unless its reason is in
 * `tolerate` (a later step of the same flow will fix it, e.g. an approval not yet given).
 */
export async function simulate(ctx, contract, fn, args, { tolerate = [] } = {}) {
  try {
    await simulateContract(ctx.publicClient, callOf(ctx, contract, fn, args));
  } catch (error) {
    const reason = revertReason(error);
    if (reason !== null && tolerate.includes(reason)) return;
    if (reason !== null) throw new PlainError(explainRevert(reason, ctx.config.reverts));
    throw new PlainError(plainMessage(error, ctx.config.reverts));
  }
}

/** Simulates, then sends through the wallet and waits for the receipt; returns the receipt. */
export async function send(ctx, contract, fn, args = []) {
  await simulate(ctx, contract, fn, args);
  const hash = await inWallet(ctx, () => writeContract(ctx.walletClient, callOf(ctx, contract, fn, args)));
  let receipt;
  try {
    receipt = await waitForTransactionReceipt(ctx.publicClient, { hash, timeout: RECEIPT_TIMEOUT_MS });
  } catch (error) {
    const why = error.shortMessage || error.message;
    throw new PlainError(`The transaction ${hash} was not mined within ${RECEIPT_TIMEOUT_MS / 1000} s: ${why}`);
  }
  if (receipt.status !== "success") throw new PlainError(`The transaction ${hash} failed on chain.`);
  return receipt;
}

/** Signs EIP-712 data in the wallet; a rejection becomes the plain sentence. */
export function signTyped(ctx, typed) {
  return inWallet(ctx, () => signTypedData(ctx.walletClient, { account: ctx.account, ...typed }));
}

/** personal_sign of a text message in the wallet. */
export function signText(ctx, message) {
  return inWallet(ctx, () => signMessage(ctx.walletClient, { account: ctx.account, message }));
}

/** The latest block's time (chain time, which a dev chain may have moved ahead of the clock). */
export async function chainNow(ctx) {
  return (await getBlock(ctx.publicClient)).timestamp;
}

export function ethBalance(ctx, address) {
  return getBalance(ctx.publicClient, { address });
}

/** A contract's events named `eventName` since the first block, filtered by indexed `args`. */
export function events(ctx, contract, eventName, args) {
  return getContractEvents(ctx.publicClient, {
    address: contract.address,
    abi: contract.abi,
    eventName,
    args,
    fromBlock: 0n,
  });
}
