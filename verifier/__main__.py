"""`python -m verifier run|status`: the verifier bot."""

from verifier.main import cli

if __name__ == "__main__":
    cli(prog_name="python -m verifier")
