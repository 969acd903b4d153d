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

/** The gateway's history of the owner's assets, or null while it does not serve one. */
async function fromGateway(ctx) {
  try {
    const answer = await fetch(`${ctx.config.gateway}/providers/${ctx.account}`);
    if (!answer.ok) return null;
    const body = await answer.json();
    return Array.isArray(body.assets) ? body.assets : null;
  } catch {
    return null;
  }
}

/** The same figures read from the chain: specs, stakes, payments and slashes by event. */
async function fromChain(ctx) {
  const { assets, market } = ctx.contracts;
  const pc = ctx.publicClient;
  const total = await read(pc, assets, "totalSupply");
  const mine = [];
  for (let id = 1n; id <= total; id++)
    if ((await read(pc, assets, "ownerOf", [id])).toLowerCase() === ctx.account.toLowerCase()) mine.push(id);
  const sum = async (contract, eventName, key) => {
    const logs = await events(ctx, contract, eventName);
    const by = new Map();
    for (const log of logs) by.set(log.args.asset, (by.get(log.args.asset) ?? 0n) + log.args[key]);
    return by;
  };
  const earned = await sum(market, "ShardFinalized", "payment");
  const slashed = await sum(assets, "StakeSlashed", "amount");
  const rows = [];
  for (const id of mine) {
    const [spec, endpoint, stake] = await Promise.all([
      read(pc, assets, "spec", [id]),
      read(pc, assets, "endpoint", [id]),
      read(pc, assets, "stake", [id]),
    ]);
    rows.push({
      asset: Number(id),
      price: spec.price,
      endpoint,
      stake: stake.amount,
      leases: stake.open_leases,
      earnings: earned.get(id) ?? 0n,
      slashes: slashed.get(id) ?? 0n,
    });
  }
  return rows;
}

/** A figure from the gateway's answer, which may name it in one of a few ways. */
const pick = (row, ...keys) => {
  for (const key of keys) if (row[key] !== undefined && row[key] !== null) return row[key];
  return "";
};
const total = (value) => (Array.isArray(value) ? value.reduce((s, x) => s + BigInt(x.amount ?? x.payment ?? 0), 0n) : value);

function assetRow(row, actions) {
  const id = pick(row, "asset", "id");
  const leases = pick(row, "leases", "open_leases");
  const form = (testid, label, value, apply) =>
    el(
      "form",
      {
        onsubmit: (event) => {
          event.preventDefault();
          apply(id, byId(testid).value.trim());
        },
      },
      el("input", { dataset: { testid }, placeholder: label, value: String(value ?? "") }),
      el("button", { type: "submit", dataset: { testid: `${testid}-submit` } }, "set"),
    );
  return el(
    "tr",
    { dataset: { testid: `asset-${id}` } },
    el("td", {}, String(id)),
    el("td", { dataset: { field: "price" } }, String(pick(row, "price"))),
    el("td", { dataset: { field: "endpoint" } }, String(pick(row, "endpoint"))),
    el("td", { dataset: { field: "stake" } }, String(pick(row, "stake"))),
    el("td", { dataset: { field: "leases" } }, String(Array.isArray(leases) ? leases.length : leases)),
    el("td", { dataset: { field: "earnings" } }, String(total(pick(row, "earnings", "earned", "paid")))),
    el("td", { dataset: { field: "slashes" } }, String(total(pick(row, "slashes", "slashed")))),
    el("td", {}, form(`set-price-${id}`, "new price", "", actions.setPrice), form(`set-endpoint-${id}`, "new endpoint", "", actions.setEndpoint)),
  );
}

export async function renderAssets(ctx, actions) {
  const rows = (await fromGateway(ctx)) ?? (await fromChain(ctx));
  const body = byId("assets").querySelector("tbody");
  body.replaceChildren(...rows.map((row) => assetRow(row, actions)));
  if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 8 }, "no assets yet")));
}

export async function setPrice(ctx, asset, text) {
  if (!/^\d+$/.test(text)) throw new Error(`price: a whole number of base units per GPU-second, not ${JSON.stringify(text)}`);
  await send(ctx, ctx.contracts.assets, "set_price", [BigInt(asset), BigInt(text)]);
  status(`asset ${asset}'s price is now ${text}`);
}

export async function setEndpoint(ctx, asset, text) {
  if (text && !/^https?:\/\/\S+$/.test(text)) throw new Error(`endpoint: an http(s) URL, not ${JSON.stringify(text)}`);
  await send(ctx, ctx.contracts.assets, "set_endpoint", [BigInt(asset), text]);
  status(`asset ${asset}'s endpoint is now ${text || "(none)"}`);
}
