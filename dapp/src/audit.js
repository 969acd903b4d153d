// The audit view, no wallet needed: the gateway's ledger of every job (GET /audit), each line
// linked to its transaction, and totals that reconcile with the market's token balance.
import { byId, el, short } from "./dom.js";

const sum = (lines, ...kinds) => lines.filter((l) => kinds.includes(l.kind)).reduce((s, l) => s + BigInt(l.amount), 0n);
const first = (...values) => values.find((v) => v !== undefined && v !== null);

/** The figures shown in audit-totals, from the ledger's totals (its own figures when it names them). */
export function auditFigures(ledger) {
  const lines = ledger.jobs.flatMap((j) => j.lines);
  const t = ledger.totals || {};
  const b = ledger.balances || {};
  const fees = first(t.fees, t.keeper_fee !== undefined ? BigInt(t.keeper_fee) + BigInt(t.protocol_fee ?? 0) : undefined);
  return {
    escrowed: BigInt(first(t.escrowed, sum(lines, "escrowed"))),
    paid: BigInt(first(t.paid, sum(lines, "paid"))),
    fees: BigInt(first(fees, sum(lines, "keeper_fee", "protocol_fee"))),
    refunded: BigInt(first(t.refunded, t.refund, t.refunds, sum(lines, "refund"))),
    slashed: BigInt(first(t.slashed, t.slash, t.slashes, sum(lines, "slash"))),
    held: BigInt(first(t.held, b.escrow, 0)),
    marketBalance: BigInt(first(b.market, 0)),
  };
}

function lineRow(line) {
  return el(
    "tr",
    { dataset: { tx: line.transaction ?? "", kind: line.kind } },
    el("td", {}, line.kind),
    el("td", { title: line.account ?? "" }, short(line.account ?? "")),
    el("td", { className: "num" }, String(line.amount)),
    el("td", {}, line.asset ? `asset ${line.asset}` : ""),
    el("td", {}, line.shard !== undefined && line.shard !== null ? `shard ${line.shard}${line.replica !== undefined && line.replica !== null ? `/${line.replica}` : ""}` : ""),
    el("td", {}, line.gpu_seconds ? `${line.gpu_seconds} GPU-s` : ""),
    el("td", { title: line.transaction ?? "" }, `block ${line.block} · ${short(line.transaction ?? "")}`),
  );
}

export async function renderAudit(gateway) {
  const answer = await fetch(`${gateway}/audit`);
  if (!answer.ok) throw new Error(`The gateway answered ${answer.status} for /audit.`);
  const ledger = await answer.json();
  byId("audit-jobs").replaceChildren(
    ...ledger.jobs.map((job) =>
      el(
        "section",
        { dataset: { testid: `audit-job-${job.job}` }, className: "audit-job" },
        el("h3", {}, `job ${job.job}`, el("small", { title: job.client }, ` client ${short(job.client)}`)),
        el("table", {}, el("tbody", {}, job.lines.map(lineRow))),
      ),
    ),
  );
  const f = auditFigures(ledger);
  const totals = byId("audit-totals");
  Object.assign(totals.dataset, {
    escrowed: f.escrowed,
    paid: f.paid,
    fees: f.fees,
    refunded: f.refunded,
    slashed: f.slashed,
    held: f.held,
    marketBalance: f.marketBalance,
  });
  totals.replaceChildren(
    el("dt", {}, "escrowed"), el("dd", {}, String(f.escrowed)),
    el("dt", {}, "paid to providers"), el("dd", {}, String(f.paid)),
    el("dt", {}, "fees"), el("dd", {}, String(f.fees)),
    el("dt", {}, "refunded"), el("dd", {}, String(f.refunded)),
    el("dt", {}, "slashed"), el("dd", {}, String(f.slashed)),
    el("dt", {}, "escrow still held"), el("dd", {}, String(f.held)),
    el("dt", {}, "market's token balance"), el("dd", {}, String(f.marketBalance)),
  );
  return ledger;
}
