"""ML workloads for the ML job image: training, inference and near-duplicate detection
(docs/ai.md). The scripts run inside the image; `python -m examples.ml` stages their inputs."""
