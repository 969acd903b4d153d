// The provider view: register a node (and stake it), the account's assets with their price,
// endpoint, stake, leases, earnings and slashes, changing price and endpoint, credits.
import { isAddress, keccak256, parseEventLogs } from "viem";
import { canonicalJson } from "./manifest.js";
import { chainNow, events, read, send } from "./chain.js";
import { byId, el, field, status, wholeNumber } from "./dom.js";

const LISTING_DAYS = 30n; // as `ape run provider register`

/** The spec tuple of the form (contracts/modules/asset_spec.vy's Spec). */
async function specFromForm(ctx) {
  return {
    gpu_model: wholeNumber("reg-gpu-model", "GPU model id"),
    vram_mib: wholeNumber("reg-vram", "VRAM (MiB)"),
    gpu_count: wholeNumber("reg-gpus", "GPUs"),
    cpu_cores: wholeNumber("reg-cpu-cores", "CPU cores", { min: 1 }),
    region: wholeNumber("reg-region", "region (ISO 3166-1 numeric)"),
    price: wholeNumber("reg-price", "price (base units per GPU-second)"),
    expire: (await chainNow(ctx)) + LISTING_DAYS * 86400n,
    active: true,
    max_leases: wholeNumber("reg-max-leases", "max leases", { min: 1 }),
    memory_mib: wholeNumber("reg-memory", "memory (MiB)", { min: 1 }),
    disk_mib: wholeNumber("reg-disk", "disk (MiB)", { min: 1 }),
  };
}

/** Registers the node, then approves and adds its stake; returns the new asset id. */
export async function registerAsset(ctx) {
  const { assets, token } = ctx.contracts;
  const spec = await specFromForm(ctx);
  const agent = field("reg-agent") || ctx.account;
  if (!isAddress(agent)) throw new Error(`agent: not an address: ${agent}`);
  const endpoint = field("reg-endpoint");
  const stake = wholeNumber("reg-stake", "stake (base units)");
  const commit = keccak256(canonicalJson(spec)); // the spec as sorted JSON, as the CLI commits it
  status("registering the node; confirm in your wallet…");
  const receipt = await send(ctx, assets, "register", [spec, agent, commit, endpoint]);
  const [registered] = parseEventLogs({ abi: assets.abi, logs: receipt.logs, eventName: "AssetRegistered" });
  const asset = registered.args.asset;
  if (stake > 0n) {
    const allowance = await read(ctx.publicClient, token, "allowance", [ctx.account, assets.address]);
    if (allowance < stake) {
      status(`approve the stake (${stake} base units) in your wallet…`);
      await send(ctx, token, "approve", [assets.address, stake]);
    }
    await send(ctx, assets, "add_stake", [asset, stake]);
  }
  status(`asset ${asset} registered${stake > 0n ? ` with a stake of ${stake}` : ""}`);
  return asset;
}

/** GET /providers/{account}: the owner's assets with their leases, earnings and slashes, or
 * null when the gateway does not answer it (then the chain's events are summed instead). */
async function history(ctx) {
  try {
    const answer = await fetch(`${ctx.config.gateway}/providers/${ctx.account}`);
    return answer.ok ? await answer.json() : null;
  } catch {
    return null;
  }
}

/** The account's assets now (ownerOf over every asset), when the gateway has no history. */
async function ownedOnChain(ctx) {
  const { assets } = ctx.contracts;
  const total = await read(ctx.publicClient, assets, "totalSupply");
  const mine = [];
  for (let id = 1n; id <= total; id++)
    if ((await read(ctx.publicClient, assets, "ownerOf", [id])).toLowerCase() === ctx.account.toLowerCase())
      mine.push(id);
  return mine;
}

/** asset -> the sum of `key` (or the count, without one) over a contract's events. */
async function byAsset(ctx, contract, eventName, key) {
  const by = new Map();
  for (const log of await events(ctx, contract, eventName))
    by.set(log.args.asset, (by.get(log.args.asset) ?? 0n) + (key ? log.args[key] : 1n));
  return by;
}

/** One row per asset the account owns: price, endpoint and stake read on chain; leases,
 * earnings and slashes from the gateway's history, else from the chain's events. */
async function assetRows(ctx) {
  const { assets, market } = ctx.contracts;
  const told = await history(ctx);
  let ids, figures;
  if (told) {
    const owned = told.assets.filter((a) => a.owned);
    ids = owned.map((a) => BigInt(a.asset));
    figures = new Map(owned.map((a) => [BigInt(a.asset), a.totals]));
  } else {
    ids = await ownedOnChain(ctx);
    const [leases, earned, slashed] = await Promise.all([
      byAsset(ctx, market, "ShardAssigned"),
      byAsset(ctx, market, "ShardFinalized", "payment"),
      byAsset(ctx, assets, "StakeSlashed", "amount"),
    ]);
    const of = (by, id) => by.get(id) ?? 0n;
    figures = new Map(
      ids.map((id) => [id, { leases: of(leases, id), earned: of(earned, id), slashed: of(slashed, id) }]),
    );
  }
  const rows = [];
  for (const id of ids) {
    const [spec, endpoint, stake] = await Promise.all([
      read(ctx.publicClient, assets, "spec", [id]),
      read(ctx.publicClient, assets, "endpoint", [id]),
      read(ctx.publicClient, assets, "stake", [id]),
    ]);
    const f = figures.get(id);
    rows.push({
      asset: id,
      price: spec.price,
      endpoint,
      stake: stake.amount,
      leases: f.leases,
      earnings: f.earned,
      slashes: f.slashed,
    });
  }
  return rows;
}

function assetRow(row, actions) {
  const id = String(row.asset);
  const form = (testid, label, apply) =>
    el(
      "form",
      {
        onsubmit: (event) => {
          event.preventDefault();
          apply(id, byId(testid).value.trim());
        },
      },
      el("input", { dataset: { testid }, placeholder: label }),
      el("button", { type: "submit", dataset: { testid: `${testid}-submit` } }, "set"),
    );
  const cell = (name) => el("td", { dataset: { field: name } }, String(row[name]));
  return el(
    "tr",
    { dataset: { testid: `asset-${id}` } },
    el("td", {}, id),
    ["price", "endpoint", "stake", "leases", "earnings", "slashes"].map(cell),
    el(
      "td",
      {},
      form(`set-price-${id}`, "new price", actions.setPrice),
      form(`set-endpoint-${id}`, "new endpoint", actions.setEndpoint),
    ),
  );
}

export async function renderAssets(ctx, actions) {
  const rows = await assetRows(ctx);
  const body = byId("assets").querySelector("tbody");
  body.replaceChildren(...rows.map((row) => assetRow(row, actions)));
  if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 8 }, "no assets yet")));
}

export async function setPrice(ctx, asset, text) {
  if (!/^\d+$/.test(text))
    throw new Error(`price: a whole number of base units per GPU-second, not ${JSON.stringify(text)}`);
  await send(ctx, ctx.contracts.assets, "set_price", [BigInt(asset), BigInt(text)]);
  status(`asset ${asset}'s price is now ${text}`);
}

export async function setEndpoint(ctx, asset, text) {
  // Never empty from here: an asset without an endpoint gets no work, and an empty field is a slip.
  if (!/^https?:\/\/\S+$/.test(text)) throw new Error(`endpoint: your agent's http(s) URL, not ${JSON.stringify(text)}`);
  await send(ctx, ctx.contracts.assets, "set_endpoint", [BigInt(asset), text]);
  status(`asset ${asset}'s endpoint is now ${text}`);
}
