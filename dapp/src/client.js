// The client view: a job from the form, its quote, paying for it (x402 or on chain), the
// account's jobs, and one job's detail: shards, outputs, cancel, challenge, refund, credits.
import { parseEventLogs, parseSignature } from "viem";
import { signTypedData } from "viem/actions";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { buildManifest, canonicalJson, manifestHash, runTimeout } from "./manifest.js";
import { putBlob } from "./store.js";
import { parseCommand } from "./command.js";
import { chainNow, ethBalance, events, read, send, signTyped, simulate } from "./chain.js";
import { PlainError, REJECTED, isRejection } from "./errors.js";
import { replicaOutputs } from "./outputs.js";
import { byId, el, field, status, wholeNumber } from "./dom.js";
import { POSTABLE_VERIFICATION, jobTitle, shardLine } from "./jobview.js";

const VERIFICATION = POSTABLE_VERIFICATION; // zk is posted with its model bound (jobview.js)
const MAX_OUTPUT_BYTES = 64 << 20; // as `ape run job manifest`
const ALLOWANCE_SHORT = "ERC20: transfer amount exceeds allowance";
const POLL_MS = 2000;

/** The job's requirements from the form, as the contract's struct (bigints). */
export async function requirementsFromForm(ctx) {
  const verification = VERIFICATION[field("job-verification")];
  if (verification === undefined) throw new Error(`verification: ${Object.keys(VERIFICATION).join(", ")}`);
  const minutes = wholeNumber("job-deadline-minutes", "deadline (minutes)", { min: 1 });
  return {
    min_vram_mib: wholeNumber("job-min-vram", "minimum VRAM (MiB)"),
    gpu_count: wholeNumber("job-gpus", "GPUs"),
    max_price: wholeNumber("job-max-price", "max price (base units per GPU-second)", { min: 1 }),
    max_gpu_seconds: wholeNumber("job-max-seconds", "max GPU-seconds", { min: 1 }),
    deadline: (await chainNow(ctx)) + minutes * 60n,
    shard_count: wholeNumber("job-shards", "shards", { min: 1 }),
    replication: wholeNumber("job-replication", "replication", { min: 1 }),
    verification: BigInt(verification),
    cpu_cores: wholeNumber("job-cpu-cores", "CPU cores", { min: 1 }),
    memory_mib: wholeNumber("job-memory", "memory (MiB)", { min: 1 }),
    disk_mib: wholeNumber("job-disk", "disk (MiB)", { min: 1 }),
  };
}

export async function quote(ctx) {
  const req = await requirementsFromForm(ctx);
  const budget = await read(ctx.publicClient, ctx.contracts.market, "quote", [req]);
  byId("quote").textContent = budget.toString();
  return { req, budget };
}

/** The manifest from the form, its inputs and itself uploaded to the content store. */
async function prepareManifest(ctx, req) {
  const picked = Array.from(byId("job-inputs").files || []);
  const files = [];
  for (const file of picked) files.push({ path: file.name, bytes: new Uint8Array(await file.arrayBuffer()) });
  const manifest = await buildManifest({
    image: field("job-image"),
    command: parseCommand(byId("job-command").value),
    files,
    timeoutSeconds: runTimeout(req, ctx.config),
    maxOutputBytes: MAX_OUTPUT_BYTES,
  });
  status(`uploading ${files.length} input(s) and the manifest to the content store…`);
  for (const f of files) await putBlob(ctx.config.storeUrl, f.bytes);
  await putBlob(ctx.config.storeUrl, canonicalJson(manifest));
  return { manifest, hash: manifestHash(manifest) };
}

function requirementsJson(req) {
  return Object.fromEntries(Object.entries(req).map(([k, v]) => [k, Number(v)]));
}

/** Pays over x402: the wallet signs an EIP-3009 authorization, the gateway's facilitator posts. */
export async function payX402(ctx) {
  const req = await requirementsFromForm(ctx);
  const { manifest } = await prepareManifest(ctx, req);
  let rejected = false;
  const signer = {
    address: ctx.account,
    async signTypedData(message) {
      try {
        return await signTypedData(ctx.walletClient, { account: ctx.account, ...message });
      } catch (error) {
        rejected = isRejection(error);
        throw error;
      }
    },
  };
  // Pay only the market's own quote, in its token, to the market: not the gateway's word for it.
  const { market, token } = ctx.contracts;
  const budget = await read(ctx.publicClient, market, "quote", [req]);
  const same = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();
  const theQuote = (_version, offers) =>
    offers.filter((o) => same(o.payTo, market.address) && same(o.asset, token.address) && BigInt(o.amount) === budget);
  const payer = x402Client.fromConfig({
    schemes: [{ network: ctx.config.network, client: new ExactEvmScheme(signer) }],
    policies: [theQuote],
    spendControls: {
      allowedAssets: [{ network: ctx.config.network, asset: token.address, maxAmountPerPayment: String(budget) }],
    },
  });
  const payingFetch = wrapFetchWithPayment(fetch, payer);
  status("posting the job; sign the payment in your wallet…");
  let answer;
  try {
    answer = await payingFetch(`${ctx.config.gateway}/jobs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ manifest, requirements: requirementsJson(req) }),
    });
  } catch (error) {
    if (rejected) throw new PlainError(REJECTED);
    throw new PlainError(`The payment could not be made: ${error.message}`);
  }
  const body = await answer.json().catch(() => ({}));
  if (answer.status !== 201) throw new PlainError(body.message || `The gateway answered ${answer.status}.`);
  status(`job ${body.job} posted and paid (${body.budget} base units), transaction ${body.transaction}`);
  return body.job;
}

function jobIdFrom(ctx, receipt) {
  const [posted] = parseEventLogs({ abi: ctx.contracts.market.abi, logs: receipt.logs, eventName: "JobPosted" });
  return posted.args.job;
}

/** Pays on chain: an EIP-2612 permit signed in the wallet and post_job_with_permit, else approve + post_job. */
export async function payOnChain(ctx) {
  const { market, token } = ctx.contracts;
  const req = await requirementsFromForm(ctx);
  const { hash } = await prepareManifest(ctx, req);
  const budget = await read(ctx.publicClient, market, "quote", [req]);
  const deadline = (await chainNow(ctx)) + 3600n;
  // Explains a refusal (deadline, price, pause…) before the wallet is asked anything.
  const blank = "0x" + "00".repeat(32); // no permit yet: only the allowance may be missing
  await simulate(ctx, market, "post_job_with_permit", [hash, req, deadline, 0, blank, blank], {
    tolerate: [ALLOWANCE_SHORT],
  });
  let nonce = null;
  try {
    nonce = await read(ctx.publicClient, token, "nonces", [ctx.account]);
  } catch {} // a token without EIP-2612: approve instead
  let receipt;
  if (nonce !== null) {
    status("sign the permit for the job's budget in your wallet…");
    const signature = await signTyped(ctx, {
      domain: {
        name: ctx.config.token.name,
        version: ctx.config.token.version,
        chainId: ctx.config.chainId,
        verifyingContract: token.address,
      },
      types: {
        Permit: [
          { name: "owner", type: "address" },
          { name: "spender", type: "address" },
          { name: "value", type: "uint256" },
          { name: "nonce", type: "uint256" },
          { name: "deadline", type: "uint256" },
        ],
      },
      primaryType: "Permit",
      message: { owner: ctx.account, spender: market.address, value: budget, nonce, deadline },
    });
    const { r, s, v, yParity } = parseSignature(signature);
    status("posting the job; confirm the transaction in your wallet…");
    const vByte = Number(v ?? BigInt(yParity + 27));
    receipt = await send(ctx, market, "post_job_with_permit", [hash, req, deadline, vByte, r, s]);
  } else {
    const allowance = await read(ctx.publicClient, token, "allowance", [ctx.account, market.address]);
    if (allowance < budget) {
      status("approve the job's budget in your wallet…");
      await send(ctx, token, "approve", [market.address, budget]);
    }
    receipt = await send(ctx, market, "post_job", [hash, req]);
  }
  const job = jobIdFrom(ctx, receipt);
  status(`job ${job} posted (${budget} base units escrowed), transaction ${receipt.transactionHash}`);
  return job;
}

async function gatewayJson(ctx, path, init) {
  const answer = await fetch(`${ctx.config.gateway}${path}`, init);
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new PlainError(body.message || `The gateway answered ${answer.status} for ${path}.`);
  return body;
}

/** The account's jobs, newest first, as rows `job-<id>`. */
export async function renderJobs(ctx, onOpen) {
  const jobs = await gatewayJson(ctx, `/jobs?client=${ctx.account}`);
  const list = byId("jobs");
  list.replaceChildren(
    ...jobs.map((j) =>
      el(
        "li",
        { dataset: { testid: `job-${j.job}` }, onclick: () => onOpen(j.job) },
        el("button", { type: "button" }, `job ${j.job}`),
        ` budget ${j.budget}, escrow ${j.escrow}, ${j.unfinished} unfinished`,
      ),
    ),
  );
  if (!jobs.length) list.append(el("li", {}, "no jobs yet"));
  return jobs;
}

/** The job's refund from its JobFinished event, or null while it is not finished. */
async function refundOf(ctx, job) {
  const found = await events(ctx, ctx.contracts.market, "JobFinished", { job: BigInt(job) });
  return found.length ? found[found.length - 1].args.refund : null;
}

/** Draws a job's detail once: its mode (a zk job's model), shards with their state, asset,
 * proven replicas and waiting reason; the refund. */
export async function renderJob(ctx, job, actions) {
  const view = await gatewayJson(ctx, `/jobs/${job}`);
  const detail = byId("job-detail");
  const drawn = JSON.stringify(view);
  // Redrawn only on change, so a button is not replaced under the user's (or a test's) click.
  if (detail.dataset.job === String(job) && detail.dataset.drawn === drawn) return view;
  detail.dataset.job = String(job);
  detail.dataset.drawn = drawn;
  byId("job-title").textContent = jobTitle(job, view);
  const button = (testid, label, onclick) => el("button", { type: "button", dataset: { testid }, onclick }, label);
  byId("shards").replaceChildren(
    ...view.shards.map(({ shard, ...rest }) =>
      el(
        "li",
        {},
        el("span", { dataset: { testid: `shard-${shard}` } }, shardLine({ shard, ...rest })),
        " ",
        button(`cancel-${shard}`, "cancel", () => actions.cancel(job, shard)),
        " ",
        button(`challenge-${shard}`, "challenge", () => actions.challenge(job, shard)),
      ),
    ),
  );
  const refund = view.finished ? await refundOf(ctx, job) : null;
  byId("refund").textContent = refund === null ? "" : refund.toString();
  actions.changed?.();
  return view;
}

/** Polls the open job every ~2 s until another is opened or the view is left. */
export function watchJob(ctx, job, actions, onError) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      ctx.lastJob = await renderJob(ctx, job, actions);
    } catch (error) {
      onError(error);
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Fetches every submitted replica's outputs and shows each file with data-verified. */
export async function verifyOutputs(ctx, job) {
  const view = await gatewayJson(ctx, `/jobs/${job}`);
  const list = byId("outputs");
  list.replaceChildren();
  const shown = new Set();
  let count = 0;
  let matching = 0;
  for (const shard of view.shards) {
    for (const replica of shard.replicas) {
      if (!replica.output_root) continue;
      const agent =
        replica.agent || (await read(ctx.publicClient, ctx.contracts.assets, "agentOf", [BigInt(replica.asset)]));
      status(`fetching shard ${shard.shard} replica ${replica.replica}'s outputs; sign each request in your wallet…`);
      const { files } = await replicaOutputs(ctx, job, shard.shard, replica.replica, agent);
      for (const f of files) {
        // The first copy of a path gets output-<path>; later replicas' copies are told apart.
        const testid = shown.has(f.path) ? `output-${shard.shard}-${replica.replica}-${f.path}` : `output-${f.path}`;
        shown.add(f.path);
        const preview = new TextDecoder().decode(f.bytes.slice(0, 2048));
        list.append(
          el(
            "li",
            {
              dataset: {
                testid,
                verified: String(f.verified),
                shard: String(shard.shard),
                replica: String(replica.replica),
              },
            },
            el("strong", {}, f.path),
            ` (${f.bytes.length} bytes, shard ${shard.shard} replica ${replica.replica}) `,
            f.verified ? "✔ matches the on-chain root" : `✘ ${f.problem}`,
            el("pre", {}, preview),
          ),
        );
        count++;
        if (f.verified) matching++;
      }
    }
  }
  if (!count) status("no submitted outputs yet");
  else if (matching === count) status(`all ${count} output file(s) match the on-chain roots`);
  else
    throw new PlainError(
      `${count - matching} of ${count} output file(s) do not match the on-chain roots: do not trust them.`,
    );
}

/** Cancels a shard's unstarted replicas: signed and relayed by the gateway when the wallet has no ETH. */
export async function cancelShard(ctx, job, shard) {
  const eth = await ethBalance(ctx, ctx.account);
  if (eth > 0n) {
    const receipt = await send(ctx, ctx.contracts.market, "cancel", [BigInt(job), BigInt(shard)]);
    status(`shard ${shard} cancelled, transaction ${receipt.transactionHash}`);
    return;
  }
  const typed = await gatewayJson(ctx, `/jobs/${job}/shards/${shard}/cancel-message`);
  let signature;
  try {
    signature = await ctx.provider.request({
      method: "eth_signTypedData_v4",
      params: [ctx.account, JSON.stringify(typed)],
    });
  } catch (error) {
    throw new PlainError(isRejection(error) ? REJECTED : `The wallet could not sign the cancel: ${error.message}`);
  }
  const body = await gatewayJson(ctx, `/jobs/${job}/shards/${shard}/cancel`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ valid_before: Number(typed.message.validBefore), signature }),
  });
  status(`shard ${shard} cancelled (signed, relayed by the gateway), transaction ${body.transaction}`);
}

/** Challenges a shard's results, approving the market for the court's bond first. */
export async function challengeShard(ctx, job, shard) {
  const { market, court, token } = ctx.contracts;
  const args = [BigInt(job), BigInt(shard)];
  await simulate(ctx, court, "challenge", args, { tolerate: [ALLOWANCE_SHORT] });
  const bond = await read(ctx.publicClient, market, "challenge_bond");
  const allowance = await read(ctx.publicClient, token, "allowance", [ctx.account, market.address]);
  if (allowance < bond) {
    status(`approve the challenge bond (${bond} base units) in your wallet…`);
    await send(ctx, token, "approve", [market.address, bond]);
  }
  const receipt = await send(ctx, court, "challenge", args);
  status(`shard ${shard} challenged with a bond of ${bond}, transaction ${receipt.transactionHash}`);
}

export async function showCredits(ctx, testid) {
  const credits = await read(ctx.publicClient, ctx.contracts.market, "credits", [ctx.account]);
  byId(testid).textContent = credits.toString();
  return credits;
}

/** Withdraws the account's credits at the market (refunds, payments, returned bonds). */
export async function withdrawCredits(ctx) {
  const receipt = await send(ctx, ctx.contracts.market, "withdraw", [ctx.account]);
  status(`credits withdrawn, transaction ${receipt.transactionHash}`);
}
