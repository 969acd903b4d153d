"""`python -m keepers listen|worker|start|status`: the keeper without `ape run`."""

from keepers.main import commands

if __name__ == "__main__":
    commands()(prog_name="python -m keepers")
