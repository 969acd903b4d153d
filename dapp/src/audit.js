// The audit view, no wallet needed: the gateway's ledger of every job (GET /audit,
// computenet/audit.py), each line linked to its transaction, and totals that reconcile with
// the market's token balance; whatever does not reconcile is shown, never hidden.
import { byId, el, short } from "./dom.js";

/** The figures shown in audit-totals (and its data-* attributes), from the ledger's sums. */
export function auditFigures(ledger) {
  const t = ledger.totals;
  return {
    escrowed: t.escrowed,
    paid: t.paid,
    fees: t.fees,
    refunded: t.refunded,
    slashed: t.slashed,
    held: t.held,
    marketBalance: ledger.balances.market,
  };
}

const LABELS = {
  escrowed: "escrowed by clients",
  paid: "paid to providers",
  fees: "keeper and protocol fees",
  refunded: "refunded",
  slashed: "slashed from stakes",
  held: "escrow still held",
  marketBalance: "market's token balance",
};

function lineRow(line) {
  const known = (value) => value !== null && value !== undefined;
  const where = known(line.shard) ? `shard ${line.shard}` + (known(line.replica) ? `/${line.replica}` : "") : "";
  return el(
    "tr",
    { dataset: { tx: line.transaction, kind: line.kind } },
    el("td", {}, line.kind + (line.detail ? ` (${line.detail})` : "")),
    el("td", { title: line.account ?? "" }, short(line.account ?? "")),
    el("td", { className: "num" }, String(line.amount)),
    el("td", {}, line.asset ? `asset ${line.asset}` : ""),
    el("td", {}, where),
    el("td", {}, line.gpu_seconds ? `${line.gpu_seconds} GPU-s × ${line.price}` : ""),
    el("td", { title: line.transaction }, `block ${line.block} · ${short(line.transaction)}`),
  );
}

function jobSection(job) {
  return el(
    "section",
    { dataset: { testid: `audit-job-${job.job}`, reconciled: String(job.reconciled) }, className: "audit-job" },
    el(
      "h3",
      {},
      `job ${job.job}`,
      el("small", { title: job.client }, ` client ${short(job.client)}${job.finished ? ", finished" : ""}`),
    ),
    el("table", {}, el("tbody", {}, job.lines.map(lineRow))),
    job.problems.length ? el("p", { className: "error" }, job.problems.join("; ")) : null,
  );
}

export async function renderAudit(gateway) {
  const answer = await fetch(`${gateway}/audit`);
  if (!answer.ok) throw new Error(`The gateway answered ${answer.status} for /audit.`);
  const ledger = await answer.json();
  byId("audit-jobs").replaceChildren(...[...ledger.jobs].reverse().map(jobSection));
  const figures = auditFigures(ledger);
  const totals = byId("audit-totals");
  for (const [key, value] of Object.entries(figures)) totals.dataset[key] = String(value);
  totals.dataset.reconciled = String(ledger.reconciled);
  totals.replaceChildren(
    ...Object.entries(figures).flatMap(([key, value]) => [el("dt", {}, LABELS[key]), el("dd", {}, String(value))]),
    el("dt", {}, "reconciled at block " + ledger.block),
    el("dd", {}, ledger.reconciled ? "yes" : `no: ${ledger.problems.join("; ")}`),
  );
  return ledger;
}
