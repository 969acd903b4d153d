// The page: views and navigation, the wallet connection, and one status line and one error
// line that every action reports to.
import { getAddress } from "viem";
import { loadConfig } from "./config.js";
import { connectWallet } from "./wallet.js";
import { contractsOf, publicClientOf, walletClientOf } from "./chain.js";
import { plainMessage } from "./errors.js";
import { byId, showError, status } from "./dom.js";
import * as client from "./client.js";
import * as provider from "./provider.js";
import { renderAudit } from "./audit.js";

const ctx = { config: null, contracts: null, publicClient: null, walletClient: null, provider: null, account: null };
let stopWatching = () => {};

/** Runs an action: clears the error line, shows its failure in plain words. */
async function act(what, action) {
  showError("");
  try {
    return await action();
  } catch (error) {
    showError(plainMessage(error, ctx.config?.reverts));
    status(`${what} failed`);
    return undefined;
  }
}

/** An action that needs the wallet: refused in plain words before it starts without one. */
function withWallet(what, action) {
  return act(what, async () => {
    if (!ctx.account) throw new Error("Connect your wallet first.");
    return action();
  });
}

const VIEWS = ["client", "provider", "audit"];

function show(view) {
  for (const name of VIEWS) {
    byId(`view-${name}`).hidden = name !== view;
    byId(`nav-${name}`).setAttribute("aria-current", name === view ? "page" : "false");
  }
  if (view !== "client") stopWatching();
  if (view === "audit")
    act("loading the audit", async () => {
      const ledger = await renderAudit(ctx.config.gateway);
      const state = ledger.reconciled ? "reconciled" : "NOT reconciled";
      status(`the ledger at block ${ledger.block}: ${ledger.jobs.length} job(s), ${state}`);
    });
  if (view === "provider" && ctx.account) act("loading your assets", () => refreshProvider());
  if (view === "client" && ctx.account) {
    act("loading your jobs", () => refreshClient());
    const open = byId("job-detail");
    if (!open.hidden && open.dataset.job) openJob(Number(open.dataset.job));
  }
}

const jobActions = {
  cancel: (job, shard) => withWallet(`cancelling shard ${shard}`, () => client.cancelShard(ctx, job, shard)),
  challenge: (job, shard) => withWallet(`challenging shard ${shard}`, () => client.challengeShard(ctx, job, shard)),
  // The open job moved on: the list's escrow and the credits may have changed with it. A background
  // redraw leaves the error line alone (the watcher itself reports a gateway that fails).
  changed: () => refreshClient().catch(() => {}),
};

function openJob(job) {
  stopWatching();
  const detail = byId("job-detail");
  detail.hidden = false;
  delete detail.dataset.drawn;
  byId("outputs").replaceChildren();
  stopWatching = client.watchJob(ctx, job, jobActions, (error) => showError(plainMessage(error, ctx.config.reverts)));
}

async function refreshClient() {
  await client.renderJobs(ctx, openJob);
  await client.showCredits(ctx, "client-credits");
}

const assetActions = {
  setPrice: (asset, value) =>
    withWallet("setting the price", async () => {
      await provider.setPrice(ctx, asset, value);
      await refreshProvider();
    }),
  setEndpoint: (asset, value) =>
    withWallet("setting the endpoint", async () => {
      await provider.setEndpoint(ctx, asset, value);
      await refreshProvider();
    }),
};

async function refreshProvider() {
  await provider.renderAssets(ctx, assetActions);
  await client.showCredits(ctx, "provider-credits");
}

async function connect() {
  const wallet = await connectWallet(ctx.config);
  ctx.provider = wallet.provider;
  byId("chain").textContent = String(wallet.chainId);
  byId("wallet-name").textContent = wallet.name;
  await useAccount(wallet.account);
  wallet.provider.on?.("accountsChanged", (accounts) => act("changing account", () => useAccount(accounts?.[0])));
  wallet.provider.on?.("chainChanged", (chainId) => {
    byId("chain").textContent = String(Number(chainId));
    const wrong = `Switch your wallet to chain ${ctx.config.chainId}: it is on ${Number(chainId)}.`;
    showError(Number(chainId) === ctx.config.chainId ? "" : wrong);
  });
}

/** Makes `address` the page's account (none: disconnected) and redraws the open view. */
async function useAccount(address) {
  stopWatching();
  byId("job-detail").hidden = true;
  ctx.account = address ? getAddress(address) : null;
  ctx.walletClient = address ? walletClientOf(ctx.config, ctx.provider, ctx.account) : null;
  byId("account").textContent = ctx.account ?? "";
  status(ctx.account ? `connected ${ctx.account}` : "the wallet disconnected");
  const view = VIEWS.find((name) => !byId(`view-${name}`).hidden);
  if (ctx.account && view !== "audit") show(view);
}

/** Wires a button to an action; `wallet` says whether it needs a connected account. */
function onClick(testid, what, handler, { wallet = true } = {}) {
  byId(testid).addEventListener("click", (e) => {
    e.preventDefault();
    return wallet ? withWallet(what, handler) : act(what, handler);
  });
}

function wire() {
  for (const name of VIEWS) byId(`nav-${name}`).addEventListener("click", () => show(name));
  onClick("connect", "connecting", connect, { wallet: false });
  onClick("quote-button", "quoting", async () => {
    const { budget } = await client.quote(ctx);
    status(`the job escrows at most ${budget} base units`);
  }, { wallet: false });
  const posted = async (job) => {
    await refreshClient();
    openJob(job);
  };
  onClick("pay-x402", "posting over x402", async () => posted(await client.payX402(ctx)));
  onClick("pay-onchain", "posting on chain", async () => posted(await client.payOnChain(ctx)));
  onClick("verify-outputs", "verifying outputs", () =>
    client.verifyOutputs(ctx, Number(byId("job-detail").dataset.job)),
  );
  onClick("withdraw-credits", "withdrawing credits", async () => {
    await client.withdrawCredits(ctx);
    await refreshClient();
  });
  onClick("register", "registering", async () => {
    await provider.registerAsset(ctx);
    await refreshProvider();
  });
  onClick("provider-withdraw", "withdrawing credits", async () => {
    await client.withdrawCredits(ctx);
    await refreshProvider();
  });
}

async function start() {
  wire();
  try {
    ctx.config = await loadConfig();
  } catch (error) {
    showError(error.message);
    return;
  }
  ctx.contracts = contractsOf(ctx.config);
  ctx.publicClient = publicClientOf(ctx.config);
  byId("token-symbol").textContent = ctx.config.token.symbol;
  const where = `${ctx.config.chainName || "chain"} ${ctx.config.chainId}`;
  status(`ready: ${where}; connect your wallet to post jobs or list nodes`);
  show("client");
  document.body.dataset.ready = "true";
}

start();
