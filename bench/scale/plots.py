"""The scale figures (bench/plots/scale*.png), drawn from bench/results/scale.json's data;
bench/bench_scale.py and bench/report.py both call `draw`."""

from __future__ import annotations

from pathlib import Path

from scale.analysis import kept_up_step

SHARE_COLOURS = {"keeper": "C0", "agent": "C2", "chain": "C1"}


def draw(data: dict, folder: Path) -> list[Path]:
    """scale.png (finalized/min and block gas against the offered load, per N) and
    scale_shares.png (where a shard's time goes at each N's best step); [] without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data.get("results") or []
    if not results:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    made = []

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = 0.0
    for n, r in enumerate(results):
        xs = [s["offered_per_min"] for s in r["steps"]]
        # Finalizing faster than posting is a keeper round's burst landing in a short step: not drawn.
        shown = [s for s in r["steps"] if s["finalized_per_min"] <= 1.1 * max(s["posted_per_min"], 1)]
        left.plot(
            [s["offered_per_min"] for s in shown],
            [s["finalized_per_min"] for s in shown],
            color=f"C{n}",
            label=f"N = {r['agents']:,}",
        )
        for s in shown:  # hollow: a keeper round over a sixth of the step, the rate good to a round
            face = "none" if s.get("coarse") else f"C{n}"
            left.plot(s["offered_per_min"], s["finalized_per_min"], marker="o", color=f"C{n}", markerfacecolor=face)
        held = r["saturation"].get("capacity_per_min")
        if held:
            left.axhline(held, color=f"C{n}", linestyle="--", linewidth=0.8)
        right.plot(
            xs, [s["block_gas_pct_mean"] for s in r["steps"]], marker="o", color=f"C{n}", label=f"N = {r['agents']:,}"
        )
        top = max([top, *xs])
    left.plot([0, top], [0, top], color="C7", linestyle=":", label="finalized = offered")
    left.set(
        xlabel="offered load (shards/min)",
        ylabel="finalized shards/min",
        title="throughput (dashed: working off a backlog)",
    )
    left.legend()
    right.set(xlabel="offered load (shards/min)", ylabel="block gas used, mean (% of limit)", title="block gas")
    right.legend()
    fig.tight_layout()
    path = folder / "scale.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)

    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.6 * len(results)))
    labels = []
    for row, r in enumerate(results):
        best = kept_up_step(r)
        sh = best.get("shares") or {}
        active, left_edge = sh.get("active_s", 0.0), 0.0
        for who, colour in SHARE_COLOURS.items():
            width = sh.get(who, 0.0) * active
            ax.barh(row, width, left=left_edge, color=colour, label=who if row == 0 else None)
            left_edge += width
        ax.barh(
            row,
            sh.get("window_s", 0.0),
            left=left_edge,
            color="C7",
            alpha=0.4,
            label="challenge window" if row == 0 else None,
        )
        labels.append(f"N = {r['agents']:,}\n{best['finalized_per_min']:g}/min")
    ax.set_yticks(range(len(results)), labels)
    ax.set_xlabel("seconds of a shard's life, post to finalized (mean, at the most each N kept up with)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = folder / "scale_shares.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)
    return made
