"""AuthorizationFunder unit tests: how an x402 payment (an EIP-3009 authorization to the job
market) becomes a job, or returns to its payer, and the market's FUNDER-only hooks behind it.
Each revert reason is matched exactly; each test that moves money checks the balances,
credits and what the market owes to the base unit."""

from dataclasses import replace

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

from computenet.eip3009 import TransferAuthorization, random_nonce, split

TOKEN = 10**6
MANIFEST = keccak(b"manifest")  # the conftest factories' default manifest
MAX_UINT256 = 2**256 - 1  # funded_by of an authorization returned unclaimed


# ---------------------------------------------------------------- helpers


def only(tx, event):
    """The one `event` a transaction emitted."""
    logs = tx.events.filter(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


def signature_of(vrs):
    """The 65-byte r || s || v signature the token's transferWithAuthorization(bytes) takes."""
    v, r, s = vrs
    return b"".join([r, s, bytes([v])])


def money(token, market, *accounts):
    """What the market holds and owes, and each account's balance and credit."""
    return (
        token.balanceOf(market),
        market.owed(),
        *((token.balanceOf(a), market.credits(a)) for a in accounts),
    )


@pytest.fixture
def authorize(chain, market, token, fresh):
    """An EIP-3009 TransferWithAuthorization from `fresh` (default) to the market, signed;
    returns (authorization, (v, r, s))."""

    def make(value, signer=None, payee=None, valid_after=0, valid_before=None):
        signer = signer or fresh
        auth = TransferAuthorization(
            payer=signer.address,
            payee=str(payee or market.address),
            value=value,
            valid_after=valid_after,
            valid_before=chain.pending_timestamp + 3_600 if valid_before is None else valid_before,
            nonce=random_nonce(),
        )
        signature = auth.sign(signer.private_key, token.name(), token.version(), chain.chain_id, token.address)
        return auth, split(signature)

    return make


@pytest.fixture
def front_run(token, stranger):
    """Submits a signed authorization straight to the token (anyone may): its tokens land in
    the market owed to no one."""

    def submit(auth, vrs):
        token.transferWithAuthorization(*auth.token_args(signature_of(vrs)), sender=stranger)

    return submit


def cancel_nonce(chain, token, payer, nonce, relayer):
    """The payer's own EIP-3009 cancelAuthorization of `nonce`: used up without paying anyone."""
    message = TransferAuthorization(payer.address, payer.address, 0, 0, 0, nonce).typed_data(
        token.name(), token.version(), chain.chain_id, token.address
    )
    message["types"] = {
        "EIP712Domain": message["types"]["EIP712Domain"],
        "CancelAuthorization": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}],
    }
    message |= {"primaryType": "CancelAuthorization", "message": {"authorizer": payer.address, "nonce": nonce}}
    signed = Account.sign_typed_data(payer.private_key, full_message=message)
    token.cancelAuthorization(
        payer, nonce, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"), sender=relayer
    )


# ================================================================ deployment


def test_the_funder_and_the_market_name_each_other(funder, market, token):
    assert market.FUNDER() == funder.address
    assert (funder.MARKET(), funder.TOKEN()) == (market.address, token.address)
    assert token.balanceOf(funder) == 0


# ================================================================ post_job_with_authorization


def test_post_job_with_authorization(funder, market, token, fresh, facilitator, make_requirements, authorize):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    held, owed, (paid, credit) = money(token, market, fresh)

    tx = funder.post_job_with_authorization(
        MANIFEST, req.as_tuple(), auth.market_args(), False, *vrs, sender=facilitator
    )

    posted = only(tx, market.JobPosted)
    assert (posted.job, posted.client, posted.budget) == (1, fresh.address, budget)
    funded = only(tx, funder.JobFundedByAuthorization)
    assert (funded.job, funded.payer, funded.nonce, funded.front_run) == (1, fresh.address, auth.nonce, 0)
    assert money(token, market, fresh) == (held + budget, owed + budget, (paid - budget, credit))
    assert market.job(1).escrow == budget and market.job(1).client == fresh.address
    assert funder.funded_by(fresh, auth.nonce) == 1
    assert token.authorizationState(fresh, auth.nonce)
    assert token.balanceOf(funder) == 0  # the tokens went straight to the market


def test_post_job_with_authorization_is_for_facilitators_only(
    funder, market, token, owner, fresh, stranger, make_requirements, authorize
):
    req = make_requirements()
    auth, vrs = authorize(market.quote(req.as_tuple()))
    before = money(token, market, fresh)
    for caller in (fresh, stranger, owner):
        with ape.reverts("authorization_funder: caller is not a facilitator"):
            funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), False, *vrs, sender=caller)
    assert market.job_count() == 0 and not token.authorizationState(fresh, auth.nonce)
    assert funder.funded_by(fresh, auth.nonce) == 0
    assert money(token, market, fresh) == before


def test_a_facilitator_removed_by_the_owner_is_refused(
    funder, market, token, owner, fresh, facilitator, make_requirements, authorize
):
    req = make_requirements()
    auth, vrs = authorize(market.quote(req.as_tuple()))
    market.set_facilitator(facilitator, False, sender=owner)
    before = money(token, market, fresh)
    with ape.reverts("authorization_funder: caller is not a facilitator"):
        funder.post_job_with_authorization(
            MANIFEST, req.as_tuple(), auth.market_args(), False, *vrs, sender=facilitator
        )
    assert market.job_count() == 0 and money(token, market, fresh) == before


@pytest.mark.parametrize("flaw", ["smaller value", "another payee", "expired", "not yet valid", "wrong signer"])
def test_post_job_with_a_bad_authorization_moves_nothing(
    chain, funder, market, token, fresh, stranger, facilitator, make_requirements, authorize, flaw
):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    now = chain.pending_timestamp
    reason = {
        "expired": "FiatTokenV2: authorization is expired",
        "not yet valid": "FiatTokenV2: authorization is not yet valid",
    }.get(flaw, "FiatTokenV2: invalid signature")
    auth, vrs = {
        "smaller value": lambda: authorize(budget - 1),
        "another payee": lambda: authorize(budget, payee=stranger.address),
        "expired": lambda: authorize(budget, valid_before=now - 1),
        "not yet valid": lambda: authorize(budget, valid_after=now + 3_600),
        "wrong signer": lambda: authorize(budget, signer=stranger),
    }[flaw]()
    if flaw == "wrong signer":  # signed by stranger, claimed for fresh
        auth = replace(auth, payer=fresh.address)
    before = money(token, market, fresh, stranger)
    with ape.reverts(reason):
        funder.post_job_with_authorization(
            MANIFEST, req.as_tuple(), auth.market_args(), False, *vrs, sender=facilitator
        )
    assert market.job_count() == 0 and funder.funded_by(fresh, auth.nonce) == 0
    assert money(token, market, fresh, stranger) == before


def test_an_authorization_funds_one_job_only(funder, market, token, fresh, facilitator, make_requirements, authorize):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), False, *vrs, sender=facilitator)
    before = money(token, market, fresh)
    assert before[:2] == (budget, budget)
    for front_run in (False, True):
        with ape.reverts("authorization_funder: authorization already funded a job"):
            funder.post_job_with_authorization(
                MANIFEST, req.as_tuple(), auth.market_args(), front_run, *vrs, sender=facilitator
            )
    with ape.reverts("authorization_funder: authorization already funded a job"):  # nor be returned after
        funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=facilitator)
    assert market.job_count() == 1 and funder.funded_by(fresh, auth.nonce) == 1
    assert money(token, market, fresh) == before


def test_a_front_run_authorization_funds_its_job_exactly_once(
    funder, market, token, fresh, facilitator, make_requirements, authorize, front_run
):
    """Someone submits the signed authorization straight to the token: the tokens land in the
    market credited to no one; the facilitator then posts the job on them, once."""
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    with ape.reverts("authorization_funder: authorization not used"):  # no front run happened yet
        funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator)
    front_run(auth, vrs)
    held, owed, (paid, credit) = money(token, market, fresh)
    assert (held, owed, credit) == (budget, 0, 0)  # here, owed to no one
    with ape.reverts("FiatTokenV2: authorization is used or canceled"):  # the normal path cannot reuse it
        funder.post_job_with_authorization(
            MANIFEST, req.as_tuple(), auth.market_args(), False, *vrs, sender=facilitator
        )

    tx = funder.post_job_with_authorization(
        MANIFEST, req.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator
    )

    assert only(tx, funder.JobFundedByAuthorization).front_run == 1
    assert only(tx, market.JobPosted).client == fresh.address
    assert money(token, market, fresh) == (budget, budget, (paid, 0))  # no second transfer; owed now
    assert market.job(1).escrow == budget and funder.funded_by(fresh, auth.nonce) == 1
    with ape.reverts("authorization_funder: authorization already funded a job"):
        funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator)
    assert market.job_count() == 1 and money(token, market, fresh) == (budget, budget, (paid, 0))


def test_a_front_run_claim_needs_the_payers_signature_for_this_budget(
    funder, market, token, fresh, facilitator, make_requirements, authorize, front_run
):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    front_run(auth, vrs)
    before = money(token, market, fresh)
    bigger = make_requirements(shard_count=2)
    with ape.reverts("authorization_funder: authorization not signed by payer"):  # signed for another amount
        funder.post_job_with_authorization(
            MANIFEST, bigger.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator
        )
    with ape.reverts("authorization_funder: authorization not signed by payer"):
        funder.post_job_with_authorization(
            MANIFEST,
            req.as_tuple(),
            replace(auth, valid_before=auth.valid_before + 1).market_args(),
            True,
            *vrs,
            sender=facilitator,
        )
    assert market.job_count() == 0 and funder.funded_by(fresh, auth.nonce) == 0
    assert money(token, market, fresh) == before


def test_a_front_run_claim_never_creates_escrow_without_tokens(
    chain, funder, market, token, fresh, client, stranger, facilitator, post_job, make_requirements, authorize
):
    """The payer cancels its nonce, so the chain sees it as used, and the facilitator key claims a
    front run: the market refuses, because no tokens owed to no one are here, and the other
    clients' escrow stays theirs."""
    others = post_job()  # another client's escrow sits in the market
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    cancel_nonce(chain, token, fresh, auth.nonce, stranger)
    held, owed, (paid, credit) = before = money(token, market, fresh)
    assert held == owed == market.job(others).escrow and credit == 0

    with ape.reverts("job_market: tokens not here"):
        funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator)
    with ape.reverts("job_market: tokens not here"):
        funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=facilitator)

    assert money(token, market, fresh) == before
    assert market.job_count() == others and funder.funded_by(fresh, auth.nonce) == 0
    assert market.job(others).escrow == held


def test_a_front_run_claim_takes_no_more_than_the_surplus(
    chain, funder, market, token, fresh, stranger, facilitator, make_requirements, authorize
):
    """Tokens sent to the market by a plain transfer are surplus too, but a claim needs all of
    the job's budget there: one base unit short funds nothing."""
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    cancel_nonce(chain, token, fresh, auth.nonce, stranger)  # used, moved nothing
    token.faucet(stranger, budget, sender=stranger)
    token.transfer(market, budget - 1, sender=stranger)
    before = money(token, market, fresh)
    assert before[:2] == (budget - 1, 0)
    with ape.reverts("job_market: tokens not here"):
        funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator)
    assert market.job_count() == 0 and money(token, market, fresh) == before


# ================================================================ return_unclaimed


def test_front_run_tokens_whose_job_never_came_return_to_their_payer(
    funder, market, token, fresh, stranger, facilitator, make_requirements, authorize, front_run
):
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    auth, vrs = authorize(budget)
    front_run(auth, vrs)
    paid = token.balanceOf(fresh)
    with ape.reverts("authorization_funder: caller is not a facilitator"):
        funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=stranger)
    with ape.reverts(
        "authorization_funder: authorization not signed by payer"
    ):  # the amount is part of what was signed
        funder.return_unclaimed(auth.market_args(), budget - 1, *vrs, sender=facilitator)
    with ape.reverts("authorization_funder: zero amount"):
        funder.return_unclaimed(auth.market_args(), 0, *vrs, sender=facilitator)
    assert money(token, market, fresh) == (budget, 0, (paid, 0))

    tx = funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=facilitator)

    ev = only(tx, funder.UnclaimedReturned)
    assert (ev.payer, ev.nonce, ev.amount) == (fresh.address, auth.nonce, budget)
    assert money(token, market, fresh) == (budget, budget, (paid, budget))
    assert funder.funded_by(fresh, auth.nonce) == MAX_UINT256
    with ape.reverts("authorization_funder: authorization already funded a job"):  # never a job after
        funder.post_job_with_authorization(MANIFEST, req.as_tuple(), auth.market_args(), True, *vrs, sender=facilitator)
    market.withdraw(fresh, sender=fresh)
    assert money(token, market, fresh) == (0, 0, (paid + budget, 0))
    assert market.job_count() == 0


def test_return_unclaimed_twice_is_refused(
    funder, market, token, fresh, facilitator, make_requirements, authorize, front_run
):
    """An authorization's tokens are returned once: a second return would credit tokens that
    another front run (or a plain transfer) left there for someone else."""
    budget = market.quote(make_requirements().as_tuple())
    auth, vrs = authorize(budget)
    front_run(auth, vrs)
    other, other_vrs = authorize(budget)
    front_run(other, other_vrs)  # enough surplus for a second return, if one were allowed
    paid = token.balanceOf(fresh)
    funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=facilitator)
    assert money(token, market, fresh) == (2 * budget, budget, (paid, budget))

    with ape.reverts("authorization_funder: authorization already funded a job"):
        funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=facilitator)

    assert money(token, market, fresh) == (2 * budget, budget, (paid, budget))
    funder.return_unclaimed(other.market_args(), budget, *other_vrs, sender=facilitator)  # its own, once
    assert money(token, market, fresh) == (2 * budget, 2 * budget, (paid, 2 * budget))


def test_return_unclaimed_of_an_unused_authorization_is_refused(
    funder, market, token, fresh, facilitator, make_requirements, authorize
):
    budget = market.quote(make_requirements().as_tuple())
    auth, vrs = authorize(budget)
    before = money(token, market, fresh)
    with ape.reverts("authorization_funder: authorization not used"):
        funder.return_unclaimed(auth.market_args(), budget, *vrs, sender=facilitator)
    assert money(token, market, fresh) == before and funder.funded_by(fresh, auth.nonce) == 0


# ================================================================ the market's FUNDER hooks


def test_the_markets_hooks_are_for_the_funder_only(
    funder, market, token, owner, fresh, stranger, facilitator, make_requirements
):
    """Tokens owed to no one sit in the market (a plain transfer); no account but the funder,
    not even a facilitator or the owner, can post a job on them or credit them."""
    req = make_requirements()
    budget = market.quote(req.as_tuple())
    token.faucet(stranger, budget, sender=stranger)
    token.transfer(market, budget, sender=stranger)
    before = money(token, market, fresh, stranger)
    assert before[:2] == (budget, 0)
    for caller in (stranger, facilitator, owner, fresh):
        with ape.reverts("job_market: caller is not the funder"):
            market.post_job_for(caller, MANIFEST, req.as_tuple(), sender=caller)
        with ape.reverts("job_market: caller is not the funder"):
            market.credit_surplus(caller, budget, sender=caller)
    assert market.job_count() == 0
    assert money(token, market, fresh, stranger) == before
