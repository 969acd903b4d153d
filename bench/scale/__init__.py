"""The scale simulation behind bench/bench_scale.py.

net.py       anvil (block gas limit, 1 s blocks, a fast chain clock), the deployed stack,
             N registered and staked assets with their own agent keys, bonded keepers
chain.py     `Chain`: the one place each per-item market call is sent (post, assign,
             submit, finalize), and `Inclusions`: receipts read a block at a time
agents.py    a process of simulated agents: the real agent's reads, receipt and signature,
             a null workload instead of Docker
keepers.py   a keeper process: the real keeper's projection (keepers.reactions), chain view
             (keepers.runtime.ChainView) and decisions (keepers.decisions), no Celery or Redis
monitor.py   every block's gas, transactions, events and timings, read from the chain
plots.py     the figures (bench/plots/scale*.png), also drawn by bench/report.py
"""
