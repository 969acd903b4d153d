// How one job's view (the gateway's GET /jobs/{id}) reads on the page: its verification mode
// by name, a zk job's model, and each shard's line with its proven replicas. No DOM here, so
// tests run these under node against the gateway's own JSON.

/** The market's verification modes by number, as computenet.domain.Verification names them. */
export const VERIFICATION_NAMES = Object.freeze(["optimistic", "replicated", "spot_check", "zk", "tee"]);

/** The modes the post form offers. A zk job needs its manifest bound to a registered model and
 * its inputs first (`ape run job post --verification zk --model ...`), so the form leaves it out;
 * such a job, posted elsewhere, still shows here. */
export const POSTABLE_VERIFICATION = Object.freeze({ optimistic: 0, replicated: 1, spot_check: 2, tee: 4 });

/** A mode's name from its number or name ("zk" for 3); an unknown number as "verification N". */
export function verificationName(mode) {
  if (typeof mode === "string" && VERIFICATION_NAMES.includes(mode)) return mode;
  return VERIFICATION_NAMES[Number(mode)] ?? `verification ${mode}`;
}

/** A replica's state as the page shows it: "proven" for a zk result whose proof the chain
 * checked (final at once), "attested" for a tee result whose evidence an attestor verified
 * (final after the short window), else its state on chain. */
export const replicaState = (replica) =>
  replica.proven ? "proven" : replica.attested && replica.state === "submitted" ? "attested" : replica.state;

const shortHex = (hex) => (hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex);

/** The job's title: its mode (and a zk job's model), escrow, unfinished shards. */
export function jobTitle(job, view) {
  const mode = verificationName(view.verification ?? view.requirements?.verification);
  const model = view.model ? `, model ${shortHex(view.model)}` : "";
  const finished = view.finished ? ", finished" : "";
  return `job ${job} (${mode}${model}): escrow ${view.escrow}, ${view.unfinished} unfinished${finished}`;
}

/** One shard's line: its state, its assets, its proven replicas, why it waits. */
export function shardLine(shard) {
  const assets = shard.replicas.filter((r) => r.asset).map((r) => r.asset);
  const proven = shard.replicas
    .filter((r) => r.proven || r.attested)
    .map((r) => `r${r.replica} ${replicaState(r)}`);
  const waiting = Object.values(shard.waiting || {}).map((w) => w.reason);
  return [
    `shard ${shard.shard}: ${shard.state}`,
    assets.length ? `asset ${assets.join(", ")}` : "no asset yet",
    ...proven,
    ...(waiting.length ? [`waiting: ${waiting.join("; ")}`] : []),
  ].join(" · ");
}
