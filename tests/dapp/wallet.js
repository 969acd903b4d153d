// The test wallet: an EIP-1193 provider announced over EIP-6963, injected before the page loads.
// Configured by window.__walletConfig (set just before this script):
//   {rpcUrl, account, chainId, rpcChainId, rejectNext, knownChains}
// It answers accounts and the chain id itself, switches chains on request (pretending to be on
// `chainId` until asked), rejects the next user-facing request when told to, and forwards
// everything else to anvil, which signs for its dev accounts. window.__wallet records every
// request and lets a test steer it (rejectNext, setAccount, setChain).
(() => {
  if (window.__wallet) return; // one wallet per document
  const config = window.__walletConfig;
  if (!config || !config.rpcUrl || !config.account) throw new Error("test wallet: rpcUrl and account are required");

  const hex = (n) => "0x" + Number(n).toString(16);
  const ASKS_USER = new Set([
    "eth_requestAccounts",
    "wallet_requestPermissions",
    "wallet_switchEthereumChain",
    "wallet_addEthereumChain",
    "eth_sendTransaction",
    "eth_sign",
    "personal_sign",
    "eth_signTypedData",
    "eth_signTypedData_v3",
    "eth_signTypedData_v4",
  ]);
  const listeners = new Map();
  let rpcId = 0;

  const wallet = {
    requests: [], // {method, params, rejected?, error?}
    account: config.account,
    chainId: Number(config.chainId ?? config.rpcChainId),
    knownChains: new Set((config.knownChains ?? [config.chainId, config.rpcChainId]).map(Number)),
    connected: false,
    // true: reject the next request that asks the user; a method name: the next of that method.
    rejectNext: config.rejectNext ?? false,
    setAccount(address) {
      wallet.account = address;
      emit("accountsChanged", wallet.connected ? [address] : []);
    },
    setChain(chainId) {
      wallet.chainId = Number(chainId);
      emit("chainChanged", hex(wallet.chainId));
    },
  };

  function emit(event, value) {
    for (const listener of [...(listeners.get(event) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        console.error("test wallet: a listener of", event, "threw", error);
      }
    }
  }

  function rpcError(code, message, data) {
    const error = new Error(message);
    error.code = code;
    if (data !== undefined) error.data = data;
    return error;
  }

  function plain(value) {
    try {
      return JSON.parse(JSON.stringify(value ?? []));
    } catch {
      return String(value);
    }
  }

  async function forward(method, params) {
    const response = await fetch(config.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
    });
    const body = await response.json();
    if (body.error) throw rpcError(body.error.code ?? -32603, body.error.message, body.error.data);
    return body.result;
  }

  function rejects(method) {
    const rule = wallet.rejectNext;
    if (!rule || !ASKS_USER.has(method) || (rule !== true && rule !== method)) return false;
    wallet.rejectNext = false;
    return true;
  }

  async function answer(method, params) {
    switch (method) {
      case "eth_requestAccounts":
      case "wallet_requestPermissions": {
        const first = !wallet.connected;
        wallet.connected = true;
        if (first) emit("accountsChanged", [wallet.account]);
        return method === "eth_requestAccounts" ? [wallet.account] : [{ parentCapability: "eth_accounts" }];
      }
      case "eth_accounts":
        return wallet.connected ? [wallet.account] : [];
      case "eth_coinbase":
        return wallet.connected ? wallet.account : null;
      case "eth_chainId":
        return hex(wallet.chainId);
      case "net_version":
        return String(wallet.chainId);
      case "wallet_switchEthereumChain": {
        const wanted = Number(params?.[0]?.chainId);
        if (!wallet.knownChains.has(wanted)) throw rpcError(4902, `Unrecognized chain ID ${hex(wanted)}`);
        if (wanted !== wallet.chainId) wallet.setChain(wanted);
        return null;
      }
      case "wallet_addEthereumChain": {
        const wanted = Number(params?.[0]?.chainId);
        if (!params?.[0]?.rpcUrls?.length) throw rpcError(-32602, "wallet_addEthereumChain: rpcUrls missing");
        wallet.knownChains.add(wanted);
        if (wanted !== wallet.chainId) wallet.setChain(wanted); // as MetaMask: adding also switches
        return null;
      }
      case "eth_sendTransaction": {
        const tx = { ...(params?.[0] ?? {}) };
        tx.from = tx.from ?? wallet.account;
        if (tx.from.toLowerCase() !== wallet.account.toLowerCase())
          throw rpcError(4100, `the wallet's account is ${wallet.account}, not ${tx.from}`);
        return forward(method, [tx]);
      }
      default:
        return forward(method, params ?? []);
    }
  }

  const provider = {
    isComputenetTestWallet: true,
    async request(args) {
      const { method, params } = args ?? {};
      const entry = { method, params: plain(params) };
      wallet.requests.push(entry);
      if (rejects(method)) {
        entry.rejected = true;
        throw rpcError(4001, "User rejected the request.");
      }
      try {
        return await answer(method, params);
      } catch (error) {
        entry.error = { code: error.code, message: error.message };
        throw error;
      }
    },
    on(event, listener) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(listener);
      return provider;
    },
    removeListener(event, listener) {
      listeners.get(event)?.delete(listener);
      return provider;
    },
  };
  wallet.provider = provider;
  window.__wallet = wallet;

  const uuid = globalThis.crypto?.randomUUID?.() ?? "6f1a2b3c-4d5e-4f60-8a71-92b3c4d5e6f7";
  const icon =
    "data:image/svg+xml," +
    encodeURIComponent(
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#2b6cb0"/><text x="16" y="22" font-size="16" text-anchor="middle" fill="#fff">t</text></svg>',
    );
  const detail = Object.freeze({
    info: Object.freeze({ uuid, name: "computenet test wallet", icon, rdns: "org.computenet.testwallet" }),
    provider,
  });
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
