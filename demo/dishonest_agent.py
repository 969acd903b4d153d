"""A dishonest agent for `make demo-faults`: it runs its shards like any agent but alters every
output file before committing to it, so its result differs from an honest replica's. It is the
real agent (`python -m agent run`) with one function swapped; nothing else knows."""

from agent import execute

_honest_collect = execute.collect


def _tampered_collect(outputs, logs, max_bytes, store):
    for path in sorted(p for p in outputs.rglob("*") if p.is_file()):
        path.write_bytes(path.read_bytes() + b"tampered\n")
    return _honest_collect(outputs, logs, max_bytes, store)


execute.collect = _tampered_collect

if __name__ == "__main__":
    from agent.main import commands

    commands()(["run"], prog_name="python -m demo.dishonest_agent")
