"""Plain words for contract reverts: the table and the contracts in step both ways, and
how the console scripts print a refusal.

The revert strings are read from the Vyper sources themselves with Python's tokenizer
(Vyper's lexical syntax is Python's), so an assert whose message sits on a later line is
found as surely as a one-liner, and text in comments and docstrings is not.
"""

import ast
import io
import re
import tokenize
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from computenet.cli import Refusal, clear_errors, clear_settings_errors, refusal_line
from computenet.errors import ContractRevert, ManifestError, revert_error
from computenet.explain import PLAIN, explain, reason_of

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def revert_strings(source: str) -> set[str]:
    """Every string a Vyper source reverts with: the message of `assert cond, "..."`
    (however the statement is split over lines) and `raise "..."`."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.COMMENT, tokenize.NL)
    ]
    found = set()
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME or token.string not in ("assert", "raise"):
            continue
        # The message follows the condition's top-level comma (assert) or the keyword (raise).
        start = None if token.string == "assert" else i
        depth, j = 0, i + 1
        while tokens[j].type not in (tokenize.NEWLINE, tokenize.ENDMARKER):
            text = tokens[j].string
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
            elif text == "," and depth == 0 and start is None:
                start = j
            j += 1
        parts = [ast.literal_eval(t.string) for t in tokens[(start or j) + 1 : j] if t.type == tokenize.STRING]
        if parts:
            found.add("".join(parts))
    return found


def contract_reverts() -> set[str]:
    reasons = set()
    for path in sorted(CONTRACTS.rglob("*.vy")):
        reasons |= revert_strings(path.read_text())
    return reasons


# ------------------------------------------------------------------ the reader of the sources


def test_reader_finds_every_form_of_revert():
    source = '''
"""
@notice Never read: assert x, "doc: in a docstring"
"""
# assert x, "comment: in a comment"

@external
def f(a: uint256, b: DynArray[uint256, 3]):
    assert a > 0, "one: on one line"
    assert (
        a < 10 and len(b) == 2
    ), "two: after a split condition"
    assert a != 5, (
        "three: on its own line"
    )
    assert a != 6, "four: " "in two parts"
    assert f(a, b), 'five: single quotes'  # a comment after
    assert a != 7
    if a == 8:
        raise "six: raised"
    raise
'''
    assert revert_strings(source) == {
        "one: on one line",
        "two: after a split condition",
        "three: on its own line",
        "four: in two parts",
        "five: single quotes",
        "six: raised",
    }


def test_reader_finds_the_contracts_reverts():
    reasons = contract_reverts()
    # a multi-line assert in the market, and module reverts compiled into more than one contract
    assert "job_market: gpu_seconds exceed the lease's time" in reasons
    assert {"ownable: caller is not the owner", "settlement: nothing to withdraw"} <= reasons
    assert len(reasons) >= 130


# ------------------------------------------------------------------ the table


def test_every_contract_revert_has_plain_words():
    missing = sorted(contract_reverts() - PLAIN.keys())
    assert missing == []


def test_no_plain_words_for_reverts_the_contracts_lost():
    stale = sorted(PLAIN.keys() - contract_reverts())
    assert stale == []


@pytest.mark.parametrize("reason", sorted(PLAIN))
def test_each_entry_is_one_or_two_plain_sentences(reason):
    text = PLAIN[reason]
    assert text[0].isupper() and text.endswith("."), text
    assert len(re.findall(r"[.;!?] +[A-Z]", text)) <= 1, f"more than two sentences: {text}"
    assert reason.split(":")[0] + ":" not in text, "plain words, not the module's prefix"
    assert len(text) <= 260, text


def test_entries_state_the_contracts_bounds():
    """The numbers a person needs are the contracts' own."""
    assert "1 and 1024" in PLAIN["job_market: shard count out of range"]
    assert "1 and 5" in PLAIN["job_market: replication out of range"]
    assert "60 seconds and 30 days" in PLAIN["market_params: challenge window out of range"]
    assert "1,000 basis points" in PLAIN["market_params: keeper fee too high"]
    assert "5,000 basis points" in PLAIN["market_params: slash too high"]
    assert "1,000,000 tokens" in PLAIN["test_token: faucet limit exceeded"]
    assert "lease grace" in PLAIN["job_market: deadline too soon"]


# ------------------------------------------------------------------ explain()


def test_explain_bare_reason():
    assert explain("job_market: deadline too soon") == PLAIN["job_market: deadline too soon"]
    assert explain("job_market: deadline too soon").startswith("The deadline is too close")


@pytest.mark.parametrize(
    "text",
    [
        "would revert: job_market: lease expired",
        "reverted: job_market: lease expired",
        "execution reverted: job_market: lease expired",
        "  reverted:   job_market: lease expired \n",
    ],
)
def test_explain_wrapped_reason(text):
    assert reason_of(text) == "job_market: lease expired"
    assert explain(text) == PLAIN["job_market: lease expired"]


@pytest.mark.parametrize("preflight", [True, False])
def test_explain_takes_a_contract_revert_as_it_prints(preflight):
    error = revert_error("settlement: nothing to withdraw", preflight=preflight)
    assert explain(str(error)) == "You have no credits in the market to withdraw."


def test_explain_unknown_reason_names_it():
    assert explain("job_market: no such rule") == "The contract refused: job_market: no such rule"
    assert explain("would revert: out of gas") == "The contract refused: out of gas"
    assert explain("reverted: ") == "The contract refused without a reason."


def test_explain_is_exact_not_fuzzy():
    # A near miss is not explained as its neighbour: the exact string is what counts.
    assert explain("job_market: deadline too soon!") == "The contract refused: job_market: deadline too soon!"
    assert explain("Job_market: deadline too soon").startswith("The contract refused: ")


# ------------------------------------------------------------------ the console scripts


def command_raising(error, decorate=clear_errors):
    @click.command()
    @decorate
    def command():
        raise error

    return command


def run(command):
    result = CliRunner(mix_stderr=False).invoke(command, [])
    return result.exit_code, result.stdout, result.stderr


def test_script_keeps_the_exact_error_line_and_explains_it_after():
    code, out, err = run(command_raising(revert_error("job_market: caller is not the client", preflight=True)))
    assert code == 1
    # stderr: the one `Error:` line, word for word as before
    assert err.splitlines() == ["Error: would revert: job_market: caller is not the client"]
    assert out.splitlines() == [PLAIN["job_market: caller is not the client"]]


def test_long_running_roles_explain_a_refusal_too():
    command = command_raising(revert_error("keeper_registry: not a keeper"), clear_settings_errors("X_", "keeper"))
    code, out, err = run(command)
    assert code == 1
    assert err.splitlines() == ["Error: reverted: keeper_registry: not a keeper"]
    assert out.splitlines() == [PLAIN["keeper_registry: not a keeper"]]


def test_script_adds_nothing_for_an_unknown_refusal_or_other_errors():
    code, out, err = run(command_raising(ContractRevert("transaction 0xab reverted when mined")))
    assert (code, out, err.splitlines()) == (1, "", ["Error: reverted: transaction 0xab reverted when mined"])
    code, out, err = run(command_raising(ManifestError("manifest.image: not pinned")))
    assert (code, out, err.splitlines()) == (1, "", ["Error: manifest.image: not pinned"])


def test_refusal_line_for_per_item_reports():
    error = revert_error("job_market: nothing to cancel", preflight=True)
    assert refusal_line(error) == (
        "would revert: job_market: nothing to cancel. " + PLAIN["job_market: nothing to cancel"]
    )
    assert refusal_line(ContractRevert("out of gas")) == "reverted: out of gas"
    assert Refusal(error).message == "would revert: job_market: nothing to cancel"
