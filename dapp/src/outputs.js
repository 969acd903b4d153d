// A replica's outputs through the gateway's relay, each request signed for the replica's agent,
// and each file checked against the output root READ FROM THE CHAIN: its Merkle proof, its
// sha256 in the index, and all files together rebuilding the root (none left out).
import { leaf, treeFromFiles, verify } from "./merkle.js";
import { sha256Hex } from "./manifest.js";
import { outputsPath, quotePlus, signedHeaders } from "./signed.js";
import { events, read, signText } from "./chain.js";

const SCOPE = "outputs";

async function signedGet(ctx, agent, job, shard, replica, path) {
  const agentPath = outputsPath(job, shard, replica, path);
  const headers = await signedHeaders(
    (message) => signText(ctx, message),
    ctx.account,
    SCOPE,
    ctx.config.chainId,
    agent,
    `GET ${agentPath}`,
  );
  // The relay passes its query on as it is, so the agent sees the request that was signed.
  const file = path === undefined ? "" : `/file?path=${quotePlus(path)}`;
  const url = `${ctx.config.gateway}/jobs/${job}/outputs/${shard}/${replica}${file}`;
  const answer = await fetch(url, { headers });
  if (!answer.ok) {
    const body = await answer.text();
    let message = body;
    try {
      const parsed = JSON.parse(body);
      message = parsed.message || parsed.detail || body;
    } catch {}
    throw new Error(`The outputs of shard ${shard} replica ${replica} could not be had (${answer.status}): ${message}`);
  }
  return answer;
}

/**
 * The replica's current result root, from the chain: as the market stores it or the court
 * holds it revealed (`result_root`), else, for a result recorded in a batch (one commitment,
 * no root per replica), as its ResultSubmitted event logged it: the replica's latest.
 */
async function chainRoot(ctx, job, shard, replica) {
  const at = [BigInt(job), BigInt(shard), BigInt(replica)];
  const root = await read(ctx.publicClient, ctx.contracts.court, "result_root", at);
  if (BigInt(root) !== 0n) return root.toLowerCase();
  const logged = (await events(ctx, ctx.contracts.market, "ResultSubmitted", { job: at[0] })).filter(
    (e) => e.args.shard === at[1] && e.args.replica === at[2],
  );
  return (logged.length ? logged[logged.length - 1].args.output_root : root).toLowerCase();
}

/**
 * Fetches and checks one replica's files: [{path, bytes, verified, problem}]; `agent` is the
 * replica's agent address (the server its requests are signed for).
 */
export async function replicaOutputs(ctx, job, shard, replica, agent) {
  const root = await chainRoot(ctx, job, shard, replica);
  const index = await (await signedGet(ctx, agent, job, shard, replica)).json();
  const files = [];
  for (const [path, sha] of Object.entries(index.files || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const answer = await signedGet(ctx, agent, job, shard, replica, path);
    const bytes = new Uint8Array(await answer.arrayBuffer());
    let proof = null;
    try {
      proof = JSON.parse(answer.headers.get("X-Merkle-Proof") || "");
    } catch {}
    let problem = null;
    if (!Array.isArray(proof)) problem = "no readable Merkle proof";
    else if (!verify(proof, root, leaf(path, bytes))) problem = "not in the replica's on-chain root";
    else if ((await sha256Hex(bytes)) !== String(sha).replace(/^0x/, "").toLowerCase())
      problem = "sha256 differs from the index";
    files.push({ path, bytes, verified: problem === null, problem });
  }
  // Every file proven, and together they rebuild the root: nothing was left out.
  const complete = files.length > 0 && treeFromFiles(files.map((f) => [f.path, f.bytes])).root === root;
  if (!complete)
    for (const f of files)
      if (f.verified) Object.assign(f, { verified: false, problem: "the files do not make up the on-chain root" });
  return { root, files, complete };
}
