"""`python -m agent run|status|image|store`: the agent without `ape run`."""

from agent.main import commands

if __name__ == "__main__":
    commands()(prog_name="python -m agent")
