"""`python -m examples.ml inputs WORKLOAD FOLDER [--prev DIR] [--image REF]`: writes a
workload's input files under FOLDER and prints the `ape run job manifest` command for them
(run it from the repository root; it writes FOLDER.json).

WORKLOAD is train, infer, dedup-map or dedup-reduce. DIR holds the previous stage's outputs
one folder per shard, DIR/<shard>/ (as `ape run job outputs JOB SHARD --to DIR/<shard>`
writes them, under out/), staged as FOLDER/prev/<shard>/out/<file>.
"""

import argparse
import shlex
import sys
from pathlib import Path

from examples import workloads

MAKERS = {
    "train": workloads.ml_train,
    "infer": workloads.ml_infer,
    "dedup-map": workloads.dedup_map,
    "dedup-reduce": workloads.dedup_reduce,
}
NEEDS_PREVIOUS = ("infer", "dedup-reduce")


def previous_outputs(folder: Path) -> list[dict[str, bytes]]:
    """{file: bytes} per shard folder of `folder` (0, 1, ...), from its out/ when it has one."""
    shards = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    found = []
    for shard in shards:
        base = shard / "out" if (shard / "out").is_dir() else shard
        found.append({p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()})
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.ml", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    inputs = sub.add_parser("inputs", help="write a workload's input files and print its manifest command")
    inputs.add_argument("workload", choices=sorted(MAKERS))
    inputs.add_argument("folder", type=Path)
    inputs.add_argument("--prev", type=Path, help="the previous stage's outputs, DIR/<shard>/")
    inputs.add_argument("--image", default="$IMAGE", help="the ML image's reference (python -m agent image --ml)")
    args = parser.parse_args(argv)

    if args.workload in NEEDS_PREVIOUS and args.prev is None:
        parser.error(f"{args.workload} needs --prev")
    previous = previous_outputs(args.prev) if args.prev else None
    make = MAKERS[args.workload]
    command, env, files = make() if args.workload == "dedup-map" else make(previous)
    for path, data in files.items():
        target = args.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    line = ["ape", "run", "job", "manifest", "--image", args.image, "--inputs", str(args.folder)]
    line += [f"--env={k}={v}" for k, v in env.items()] + ["-o", f"{args.folder}.json", *command]
    print(f"{args.folder}: {len(files)} input file(s), {sum(map(len, files.values()))} bytes", file=sys.stderr)
    print(" ".join(part if part == "$IMAGE" else shlex.quote(part) for part in line))


if __name__ == "__main__":
    main()
