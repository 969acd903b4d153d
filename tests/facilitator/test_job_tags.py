"""The gateway's tag on a job payment's terms (facilitator/job_tags.py), without a chain: a tag
holds for exactly the terms, the gateway, the expiry and the authorization it was signed for.
The gateway and facilitator tests check the same refusals end to end."""

import time
from dataclasses import replace

import pytest
from eth_account import Account

from computenet.domain import Requirements, Verification
from facilitator.job_tags import JobTerms, sign_tag, tag_problem

GATEWAY = Account.create()
TRUSTED = {GATEWAY.address.lower()}
PAYER, NONCE = Account.create().address, b"\x22" * 32
TERMS = JobTerms(
    "eip155:31337",
    Account.create().address,
    Account.create().address,
    243_600,
    b"\x11" * 32,
    Requirements(40_960, 1, 200, 600, 2_000_000_000, 2, 1, Verification.OPTIMISTIC),
)


def other_terms():
    """TERMS with one field changed, for each field, the requirements' included."""
    changed = {
        "network": "eip155:8453",
        "asset": Account.create().address,
        "pay_to": Account.create().address,
        "amount": TERMS.amount + 1,
        "manifest_hash": b"\x12" * 32,
    }
    for field, value in changed.items():
        yield field, replace(TERMS, **{field: value})
    for field in Requirements.__dataclass_fields__:
        value = getattr(TERMS.requirements, field)
        other = Verification.REPLICATED if field == "verification" else value + 1
        yield field, replace(TERMS, requirements=replace(TERMS.requirements, **{field: other}))


def test_a_payment_tag_holds_for_its_own_terms_and_authorization_only():
    now = time.time()
    tag = sign_tag(GATEWAY.key, TERMS, int(now) + 60, PAYER, NONCE)
    assert tag_problem(tag, TERMS, TRUSTED, now, PAYER, NONCE) is None
    for field, terms in other_terms():
        problem = tag_problem(tag, terms, TRUSTED, now, PAYER, NONCE)
        assert "signature over these job terms and this authorization" in problem, field
    assert "not bound to this authorization" in tag_problem(tag, TERMS, TRUSTED, now, PAYER, b"\x33" * 32)
    assert "not bound to this authorization" in tag_problem(tag, TERMS, TRUSTED, now, Account.create().address, NONCE)
    claimed = tag | {"nonce": "0x" + "33" * 32}  # the tag's own payer and nonce are not what is signed
    assert "signature over" in tag_problem(claimed, TERMS, TRUSTED, now, PAYER, b"\x33" * 32)


def test_an_offer_tag_is_no_payment_tag_and_a_payment_tag_no_offer_tag():
    now = time.time()
    offer = sign_tag(GATEWAY.key, TERMS, int(now) + 60)
    assert "nonce" not in offer and tag_problem(offer, TERMS, TRUSTED, now) is None
    assert "not bound to this authorization" in tag_problem(offer, TERMS, TRUSTED, now, PAYER, NONCE)
    payment = sign_tag(GATEWAY.key, TERMS, int(now) + 60, PAYER, NONCE)
    assert "signature over these job terms" in tag_problem(payment, TERMS, TRUSTED, now)


@pytest.mark.parametrize(
    "case, message",
    [
        ("none", "carry no gateway tag"),
        ("no signature", "must have gateway, expires (unix seconds) and signature"),
        ("expires not a number", "must have gateway, expires"),
        ("untrusted signer", "not by a trusted gateway"),
        ("no gateway trusted", "none set"),
        ("another key claims the gateway", "signature over"),
        ("expired", "offer expired"),
        ("expiry moved", "signature over"),
        ("signature not a signature", "is not a signature"),
    ],
)
def test_a_bad_tag_is_named(case, message):
    now = time.time()
    tag = sign_tag(GATEWAY.key, TERMS, int(now) + 60, PAYER, NONCE)
    trusted = set() if case == "no gateway trusted" else TRUSTED
    bad = {
        "none": None,
        "no signature": {k: v for k, v in tag.items() if k != "signature"},
        "expires not a number": tag | {"expires": "soon"},
        "untrusted signer": sign_tag(Account.create().key, TERMS, int(now) + 60, PAYER, NONCE),
        "no gateway trusted": tag,
        "another key claims the gateway": {
            **sign_tag(Account.create().key, TERMS, int(now) + 60, PAYER, NONCE),
            "gateway": GATEWAY.address,
        },
        "expired": sign_tag(GATEWAY.key, TERMS, int(now) - 1, PAYER, NONCE),
        "expiry moved": tag | {"expires": tag["expires"] + 3_600},
        "signature not a signature": tag | {"signature": "0x1234"},
    }[case]
    assert message in tag_problem(bad, TERMS, trusted, now, PAYER, NONCE)
