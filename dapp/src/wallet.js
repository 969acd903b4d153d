// The user's wallet: EIP-6963 discovery (mipd's store), else the legacy window.ethereum; the
// connection, and the chain the page needs.
import { createStore } from "mipd";
import { PlainError, REJECTED, isRejection } from "./errors.js";

const store = createStore(); // asks every wallet to announce itself as soon as the page loads
const ANNOUNCE_WAIT_MS = 500;

/** The first wallet announced (waiting briefly for one), else window.ethereum: {provider, name}. */
export async function discoverWallet() {
  let found = store.getProviders();
  if (!found.length) {
    found = await new Promise((resolve) => {
      const stop = store.subscribe((details) => {
        if (details.length) {
          stop();
          resolve(details);
        }
      });
      setTimeout(() => {
        stop();
        resolve(store.getProviders());
      }, ANNOUNCE_WAIT_MS);
    });
  }
  if (found.length) return { provider: found[0].provider, name: found[0].info.name };
  if (window.ethereum) return { provider: window.ethereum, name: "injected wallet" };
  throw new PlainError("No wallet found: install a browser wallet (EIP-6963 or window.ethereum) and reload.");
}

async function ask(provider, method, params) {
  try {
    return await provider.request(params === undefined ? { method } : { method, params });
  } catch (error) {
    if (isRejection(error)) throw new PlainError(REJECTED);
    throw error;
  }
}

/** Whether a wallet error says the chain is unknown to it (4902, also nested by some wallets). */
function unknownChain(error) {
  return error?.code === 4902 || error?.data?.originalError?.code === 4902 || error?.cause?.code === 4902;
}

/** Switches the wallet to the deployment's chain, adding it first when the wallet lacks it. */
export async function ensureChain(provider, config) {
  const current = Number(await ask(provider, "eth_chainId"));
  if (current === config.chainId) return current;
  const chainId = "0x" + config.chainId.toString(16);
  try {
    await ask(provider, "wallet_switchEthereumChain", [{ chainId }]);
  } catch (error) {
    if (!unknownChain(error)) throw error;
    await ask(provider, "wallet_addEthereumChain", [
      {
        chainId,
        chainName: config.chainName || `chain ${config.chainId}`,
        rpcUrls: [config.rpcUrl],
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      },
    ]);
  }
  const now = Number(await ask(provider, "eth_chainId"));
  if (now !== config.chainId) throw new PlainError(`The wallet is on chain ${now}, not on ${config.chainId}.`);
  return now;
}

/** Asks the wallet for an account and the right chain: {provider, name, account, chainId}. */
export async function connectWallet(config) {
  const { provider, name } = await discoverWallet();
  const accounts = await ask(provider, "eth_requestAccounts");
  if (!accounts?.length) throw new PlainError("The wallet shared no account.");
  const chainId = await ensureChain(provider, config);
  return { provider, name, account: accounts[0], chainId };
}
