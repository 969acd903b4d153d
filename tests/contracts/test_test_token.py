"""TestToken: ERC-20, EIP-2612 permit and EIP-3009 authorizations with USDC's
interface and revert wording, plus the local-chain faucet.

Signatures are made with eth_account's `sign_typed_data` from the full EIP-712
message, independently of the contract, so a wrong typehash, domain or field
order in the contract shows up as "invalid signature" on a happy path."""

import os

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from eth_account import Account
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from computenet.deploy import TEST_TOKEN_NAME
from computenet.eip712 import domain_separator

TOKEN = 10**6
MAX_UINT256 = 2**256 - 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

TRANSFER_TYPE = (
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    "uint256 validBefore,bytes32 nonce)"
)
RECEIVE_TYPE = (
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    "uint256 validBefore,bytes32 nonce)"
)
CANCEL_TYPE = "CancelAuthorization(address authorizer,bytes32 nonce)"
PERMIT_TYPE = "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
AUTH_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
TYPES = {
    "TransferWithAuthorization": AUTH_FIELDS,
    "ReceiveWithAuthorization": AUTH_FIELDS,
    "CancelAuthorization": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}],
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


# ---------------------------------------------------------------- signing helpers


def _sign(signer, token, chain_id, primary_type, message):
    """(v, r, s) of `signer` over the typed message in the token's domain."""
    full_message = {
        "types": {"EIP712Domain": DOMAIN_FIELDS, primary_type: TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": {
            "name": TEST_TOKEN_NAME,
            "version": "2",
            "chainId": chain_id,
            "verifyingContract": str(token.address),
        },
        "message": message,
    }
    signed = Account.sign_typed_data(signer.private_key, full_message=full_message)
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def _malleate(v, r, s):
    """The high-s twin of a signature: recovers the same signer under plain ecrecover."""
    return 55 - v, r, (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")


def fresh_nonce() -> bytes:
    return os.urandom(32)


@pytest.fixture
def authorize(chain, token):
    """Signs a Transfer/ReceiveWithAuthorization; returns the contract call's arguments."""

    def make(signer, to, value, valid_after=0, valid_before=None, nonce=None, kind="TransferWithAuthorization"):
        valid_before = chain.pending_timestamp + 3_600 if valid_before is None else valid_before
        nonce = fresh_nonce() if nonce is None else nonce
        message = {
            "from": str(signer.address),
            "to": str(to.address if hasattr(to, "address") else to),
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": nonce,
        }
        v, r, s = _sign(signer, token, chain.chain_id, kind, message)
        return [message["from"], message["to"], value, valid_after, valid_before, nonce, v, r, s]

    return make


@pytest.fixture
def sign_cancel(chain, token):
    def make(signer, nonce, authorizer=None):
        message = {"authorizer": str((authorizer or signer).address), "nonce": nonce}
        return _sign(signer, token, chain.chain_id, "CancelAuthorization", message)

    return make


@pytest.fixture
def sign_permit(chain, token):
    """Signs a permit for `owner_`'s current nonce (unless given); returns the call's arguments."""

    def make(owner_, spender, value, deadline=None, nonce=None, signer=None):
        deadline = chain.pending_timestamp + 3_600 if deadline is None else deadline
        nonce = token.nonces(owner_) if nonce is None else nonce
        message = {
            "owner": str(owner_.address),
            "spender": str(spender.address),
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        }
        v, r, s = _sign(signer or owner_, token, chain.chain_id, "Permit", message)
        return [message["owner"], message["spender"], value, deadline, v, r, s]

    return make


# ---------------------------------------------------------------- metadata


def test_metadata(token):
    assert token.name() == TEST_TOKEN_NAME
    assert token.symbol() == "cnUSD"
    assert token.decimals() == 6
    assert token.version() == "2"


def test_domain_separator(chain, token):
    assert chain.chain_id == 31337
    assert token.DOMAIN_SEPARATOR() == domain_separator(TEST_TOKEN_NAME, "2", 31337, token.address)


@pytest.mark.parametrize(
    "name, selector",
    [
        ("transferWithAuthorization", "e3ee160e"),
        ("receiveWithAuthorization", "ef55bec6"),
        ("cancelAuthorization", "5a049a70"),
        ("permit", "d505accf"),
    ],
)
def test_selectors_match_usdc(token, name, selector):
    """Payment tooling (x402 facilitators) calls these by USDC's selectors."""
    (abi,) = [a for a in token.contract_type.abi if getattr(a, "name", None) == name]
    assert keccak(text=abi.selector)[:4].hex() == selector


@pytest.mark.parametrize(
    "type_string, expected",
    [
        (TRANSFER_TYPE, "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"),
        (RECEIVE_TYPE, "d099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8"),
        (CANCEL_TYPE, "158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429"),
        (PERMIT_TYPE, "6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9"),
    ],
)
def test_typehashes_are_usdcs(type_string, expected):
    """The type strings signed in this file are USDC's; the happy paths below prove
    the contract hashes the same ones."""
    assert keccak(text=type_string).hex() == expected


# ---------------------------------------------------------------- ERC-20


def test_transfer(token, client, stranger):
    before = token.balanceOf(client)
    assert token.transfer.call(stranger, 5 * TOKEN, sender=client) is True
    receipt = token.transfer(stranger, 5 * TOKEN, sender=client)
    assert token.balanceOf(client) == before - 5 * TOKEN
    assert token.balanceOf(stranger) == 5 * TOKEN
    (log,) = receipt.events.filter(token.Transfer)
    assert log.event_arguments == {"sender": client.address, "receiver": stranger.address, "value": 5 * TOKEN}


def test_transfer_whole_balance_and_zero(token, client, stranger):
    balance = token.balanceOf(client)
    token.transfer(stranger, balance, sender=client)
    assert token.balanceOf(client) == 0
    token.transfer(client, 0, sender=stranger)
    assert token.balanceOf(stranger) == balance


def test_transfer_exceeds_balance(token, client, stranger):
    with ape.reverts("ERC20: transfer amount exceeds balance"):
        token.transfer(stranger, token.balanceOf(client) + 1, sender=client)


def test_transfer_to_zero_address(token, client):
    with ape.reverts("ERC20: transfer to the zero address"):
        token.transfer(ZERO_ADDRESS, 1, sender=client)


def test_approve(token, client, stranger):
    assert token.approve.call(stranger, 7, sender=client) is True
    receipt = token.approve(stranger, 7, sender=client)
    assert token.allowance(client, stranger) == 7
    (log,) = receipt.events.filter(token.Approval)
    assert log.event_arguments == {"owner": client.address, "spender": stranger.address, "value": 7}
    token.approve(stranger, 3, sender=client)  # overwrites, does not add
    assert token.allowance(client, stranger) == 3


def test_approve_zero_address(token, client):
    with ape.reverts("ERC20: approve to the zero address"):
        token.approve(ZERO_ADDRESS, 1, sender=client)


def test_transfer_from_spends_allowance(token, client, provider, stranger):
    token.approve(stranger, 10 * TOKEN, sender=client)
    before = token.balanceOf(client)
    assert token.transferFrom.call(client, provider, 4 * TOKEN, sender=stranger) is True
    receipt = token.transferFrom(client, provider, 4 * TOKEN, sender=stranger)
    assert token.allowance(client, stranger) == 6 * TOKEN
    assert token.balanceOf(client) == before - 4 * TOKEN
    (log,) = receipt.events.filter(token.Transfer)
    assert log.event_arguments == {"sender": client.address, "receiver": provider.address, "value": 4 * TOKEN}


def test_transfer_from_infinite_allowance_not_decremented(token, client, provider, stranger):
    token.approve(stranger, MAX_UINT256, sender=client)
    token.transferFrom(client, provider, 4 * TOKEN, sender=stranger)
    assert token.allowance(client, stranger) == MAX_UINT256


def test_transfer_from_exceeds_allowance(token, client, provider, stranger):
    token.approve(stranger, 10, sender=client)
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        token.transferFrom(client, provider, 11, sender=stranger)


def test_transfer_from_without_allowance(token, client, provider, stranger):
    with ape.reverts("ERC20: transfer amount exceeds allowance"):
        token.transferFrom(client, provider, 1, sender=stranger)


def test_transfer_from_exceeds_balance(token, client, stranger, provider):
    """A spender with a large allowance still cannot move more than the owner holds."""
    token.approve(provider, MAX_UINT256, sender=stranger)
    with ape.reverts("ERC20: transfer amount exceeds balance"):
        token.transferFrom(stranger, client, 1, sender=provider)


def test_transfer_from_to_zero_address(token, client, stranger):
    token.approve(stranger, 10, sender=client)
    with ape.reverts("ERC20: transfer to the zero address"):
        token.transferFrom(client, ZERO_ADDRESS, 1, sender=stranger)


# ---------------------------------------------------------------- faucet


def test_faucet_mints(token, stranger, provider):
    """Anyone may call it on a local chain, for anyone."""
    supply = token.totalSupply()
    limit = token.FAUCET_LIMIT()
    assert limit == 10**12
    receipt = token.faucet(stranger, limit, sender=provider)
    assert token.balanceOf(stranger) == limit
    assert token.totalSupply() == supply + limit
    (log,) = receipt.events.filter(token.Transfer)
    assert log.event_arguments == {"sender": ZERO_ADDRESS, "receiver": stranger.address, "value": limit}


def test_faucet_to_zero_address(token, stranger):
    with ape.reverts("ERC20: mint to the zero address"):
        token.faucet(ZERO_ADDRESS, 1, sender=stranger)


def test_faucet_limit(token, stranger):
    with ape.reverts("test_token: faucet limit exceeded"):
        token.faucet(stranger, token.FAUCET_LIMIT() + 1, sender=stranger)


# The "test_token: faucet only on local chains" branch needs a chain id other than
# 31337/1337; anvil's chain id is fixed for a running node and this suite runs on
# 31337, so that branch is not exercised here.


# ---------------------------------------------------------------- EIP-3009 transferWithAuthorization


def test_transfer_with_authorization(token, client, provider, stranger, authorize):
    """A relayer holding no tokens submits the holder's signed transfer."""
    assert token.balanceOf(stranger) == 0
    args = authorize(client, provider, 25 * TOKEN)
    nonce = args[5]
    client_before, provider_before = token.balanceOf(client), token.balanceOf(provider)
    assert token.authorizationState(client, nonce) is False
    receipt = token.transferWithAuthorization(*args, sender=stranger)
    assert token.balanceOf(client) == client_before - 25 * TOKEN
    assert token.balanceOf(provider) == provider_before + 25 * TOKEN
    assert token.balanceOf(stranger) == 0
    assert token.authorizationState(client, nonce) is True
    (used,) = receipt.events.filter(token.AuthorizationUsed)
    assert used.event_arguments == {"authorizer": client.address, "nonce": nonce}
    (transfer,) = receipt.events.filter(token.Transfer)
    assert transfer.event_arguments == {"sender": client.address, "receiver": provider.address, "value": 25 * TOKEN}


def test_transfer_with_authorization_replay(token, client, provider, stranger, authorize):
    args = authorize(client, provider, TOKEN)
    token.transferWithAuthorization(*args, sender=stranger)
    with ape.reverts("FiatTokenV2: authorization is used or canceled"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_expired(chain, token, client, provider, stranger, authorize):
    """valid_before is exclusive: at exactly valid_before it is expired."""
    at = chain.pending_timestamp + 100
    args = authorize(client, provider, TOKEN, valid_before=at)
    chain.pending_timestamp = at
    with ape.reverts("FiatTokenV2: authorization is expired"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_last_valid_second(chain, token, client, provider, stranger, authorize):
    at = chain.pending_timestamp + 100
    args = authorize(client, provider, TOKEN, valid_after=at - 2, valid_before=at + 1)
    chain.pending_timestamp = at
    token.transferWithAuthorization(*args, sender=stranger)
    assert token.authorizationState(client, args[5]) is True


def test_transfer_with_authorization_not_yet_valid(chain, token, client, provider, stranger, authorize):
    """valid_after is exclusive: at exactly valid_after it is not yet valid."""
    at = chain.pending_timestamp + 100
    args = authorize(client, provider, TOKEN, valid_after=at, valid_before=at + 3_600)
    chain.pending_timestamp = at
    with ape.reverts("FiatTokenV2: authorization is not yet valid"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_wrong_signer(token, client, provider, stranger, authorize):
    """Signed by someone other than `from`."""
    args = authorize(provider, provider, TOKEN)
    args[0] = client.address
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_tampered_amount(token, client, provider, stranger, authorize):
    args = authorize(client, provider, TOKEN)
    args[2] = 2 * TOKEN
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_tampered_receiver(token, client, provider, stranger, authorize):
    args = authorize(client, provider, TOKEN)
    args[1] = stranger.address
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_high_s(token, client, provider, stranger, authorize):
    """The malleable twin of a valid signature is refused, so each authorization has one form."""
    args = authorize(client, provider, TOKEN)
    args[6:9] = _malleate(*args[6:9])
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(*args, sender=stranger)
    assert token.authorizationState(client, args[5]) is False


@pytest.mark.parametrize("v", [0, 1, 29])
def test_transfer_with_authorization_bad_v(token, client, provider, stranger, authorize, v):
    args = authorize(client, provider, TOKEN)
    args[6] = v
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_other_domain(chain, token, client, provider, stranger):
    """A signature for another chain id does not verify here."""
    nonce = fresh_nonce()
    valid_before = chain.pending_timestamp + 3_600
    message = {
        "from": client.address,
        "to": provider.address,
        "value": TOKEN,
        "validAfter": 0,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    v, r, s = _sign(client, token, 1, "TransferWithAuthorization", message)
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(client, provider, TOKEN, 0, valid_before, nonce, v, r, s, sender=stranger)


def test_receive_signature_not_accepted_as_transfer(token, client, provider, stranger, authorize):
    """The two authorization types hash differently, so one cannot be used as the other."""
    args = authorize(client, provider, TOKEN, kind="ReceiveWithAuthorization")
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_transfer_with_authorization_insufficient_balance(token, stranger, provider, authorize):
    """The signature is fine; the signer's balance is not, and nothing is marked used."""
    args = authorize(stranger, provider, 1)
    with ape.reverts("ERC20: transfer amount exceeds balance"):
        token.transferWithAuthorization(*args, sender=provider)
    assert token.authorizationState(stranger, args[5]) is False


# ---------------------------------------------------------------- EIP-3009 receiveWithAuthorization


def test_receive_with_authorization(token, client, provider, authorize):
    args = authorize(client, provider, 3 * TOKEN, kind="ReceiveWithAuthorization")
    client_before, provider_before = token.balanceOf(client), token.balanceOf(provider)
    receipt = token.receiveWithAuthorization(*args, sender=provider)
    assert token.balanceOf(client) == client_before - 3 * TOKEN
    assert token.balanceOf(provider) == provider_before + 3 * TOKEN
    assert token.authorizationState(client, args[5]) is True
    (used,) = receipt.events.filter(token.AuthorizationUsed)
    assert used.event_arguments == {"authorizer": client.address, "nonce": args[5]}


def test_receive_with_authorization_only_payee(token, client, provider, stranger, authorize):
    """A front-runner cannot push a deposit authorization through ahead of the payee."""
    args = authorize(client, provider, TOKEN, kind="ReceiveWithAuthorization")
    with ape.reverts("FiatTokenV2: caller must be the payee"):
        token.receiveWithAuthorization(*args, sender=stranger)


def test_receive_with_authorization_replay(token, client, provider, authorize):
    args = authorize(client, provider, TOKEN, kind="ReceiveWithAuthorization")
    token.receiveWithAuthorization(*args, sender=provider)
    with ape.reverts("FiatTokenV2: authorization is used or canceled"):
        token.receiveWithAuthorization(*args, sender=provider)


def test_transfer_signature_not_accepted_as_receive(token, client, provider, authorize):
    args = authorize(client, provider, TOKEN)
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.receiveWithAuthorization(*args, sender=provider)


def test_receive_with_authorization_expired(chain, token, client, provider, authorize):
    at = chain.pending_timestamp + 100
    args = authorize(client, provider, TOKEN, valid_before=at, kind="ReceiveWithAuthorization")
    chain.pending_timestamp = at
    with ape.reverts("FiatTokenV2: authorization is expired"):
        token.receiveWithAuthorization(*args, sender=provider)


def test_receive_with_authorization_not_yet_valid(chain, token, client, provider, authorize):
    at = chain.pending_timestamp + 100
    args = authorize(client, provider, TOKEN, valid_after=at, valid_before=at + 60, kind="ReceiveWithAuthorization")
    chain.pending_timestamp = at
    with ape.reverts("FiatTokenV2: authorization is not yet valid"):
        token.receiveWithAuthorization(*args, sender=provider)


# ---------------------------------------------------------------- EIP-3009 cancelAuthorization


def test_cancel_authorization(token, client, provider, stranger, authorize, sign_cancel):
    """The relayer holds no tokens; once cancelled, the authorization can never be used."""
    args = authorize(client, provider, TOKEN)
    nonce = args[5]
    receipt = token.cancelAuthorization(client, nonce, *sign_cancel(client, nonce), sender=stranger)
    assert token.authorizationState(client, nonce) is True
    (log,) = receipt.events.filter(token.AuthorizationCanceled)
    assert log.event_arguments == {"authorizer": client.address, "nonce": nonce}
    assert not receipt.events.filter(token.AuthorizationUsed)
    with ape.reverts("FiatTokenV2: authorization is used or canceled"):
        token.transferWithAuthorization(*args, sender=stranger)


def test_cancel_authorization_twice(token, client, stranger, sign_cancel):
    nonce = fresh_nonce()
    sig = sign_cancel(client, nonce)
    token.cancelAuthorization(client, nonce, *sig, sender=stranger)
    with ape.reverts("FiatTokenV2: authorization is used or canceled"):
        token.cancelAuthorization(client, nonce, *sig, sender=stranger)


def test_cancel_used_authorization(token, client, provider, stranger, authorize, sign_cancel):
    args = authorize(client, provider, TOKEN)
    token.transferWithAuthorization(*args, sender=stranger)
    with ape.reverts("FiatTokenV2: authorization is used or canceled"):
        token.cancelAuthorization(client, args[5], *sign_cancel(client, args[5]), sender=stranger)


def test_cancel_authorization_wrong_signer(token, client, provider, stranger, sign_cancel):
    """Only the authorizer can cancel its own nonces."""
    nonce = fresh_nonce()
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.cancelAuthorization(client, nonce, *sign_cancel(provider, nonce, authorizer=client), sender=stranger)
    assert token.authorizationState(client, nonce) is False


def test_cancel_authorization_high_s(token, client, stranger, sign_cancel):
    nonce = fresh_nonce()
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.cancelAuthorization(client, nonce, *_malleate(*sign_cancel(client, nonce)), sender=stranger)


# ---------------------------------------------------------------- EIP-2612 permit


def test_permit(token, client, stranger, sign_permit):
    """The relayer (stranger) pays gas; the allowance is the signer's."""
    assert token.nonces(client) == 0
    receipt = token.permit(*sign_permit(client, stranger, 42 * TOKEN), sender=stranger)
    assert token.allowance(client, stranger) == 42 * TOKEN
    assert token.nonces(client) == 1
    (log,) = receipt.events.filter(token.Approval)
    assert log.event_arguments == {"owner": client.address, "spender": stranger.address, "value": 42 * TOKEN}
    token.permit(*sign_permit(client, stranger, 0), sender=stranger)
    assert token.allowance(client, stranger) == 0
    assert token.nonces(client) == 2


def test_permit_replay(token, client, stranger, sign_permit):
    """The nonce moved, so the same signature now hashes a different message."""
    args = sign_permit(client, stranger, 42 * TOKEN)
    token.permit(*args, sender=stranger)
    token.approve(stranger, 0, sender=client)
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.permit(*args, sender=stranger)
    assert token.allowance(client, stranger) == 0


def test_permit_expired(chain, token, client, stranger, sign_permit):
    at = chain.pending_timestamp + 100
    args = sign_permit(client, stranger, TOKEN, deadline=at - 1)
    chain.pending_timestamp = at
    with ape.reverts("FiatTokenV2: permit is expired"):
        token.permit(*args, sender=stranger)


def test_permit_at_deadline(chain, token, client, stranger, sign_permit):
    """The deadline second itself is still valid."""
    at = chain.pending_timestamp + 100
    args = sign_permit(client, stranger, TOKEN, deadline=at)
    chain.pending_timestamp = at
    token.permit(*args, sender=stranger)
    assert token.allowance(client, stranger) == TOKEN


def test_permit_wrong_signer(token, client, provider, stranger, sign_permit):
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.permit(*sign_permit(client, stranger, TOKEN, signer=provider), sender=stranger)
    assert token.nonces(client) == 0


def test_permit_future_nonce(token, client, stranger, sign_permit):
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.permit(*sign_permit(client, stranger, TOKEN, nonce=1), sender=stranger)


def test_permit_high_s(token, client, stranger, sign_permit):
    args = sign_permit(client, stranger, TOKEN)
    args[4:7] = _malleate(*args[4:7])
    with ape.reverts("FiatTokenV2: invalid signature"):
        token.permit(*args, sender=stranger)


def test_permit_to_zero_spender(chain, token, client, stranger, sign_permit):
    """A valid signature still cannot approve the zero address."""
    args = sign_permit(client, stranger, TOKEN)
    owner_, _, value, deadline = args[:4]
    message = {"owner": owner_, "spender": ZERO_ADDRESS, "value": value, "nonce": 0, "deadline": deadline}
    v, r, s = _sign(client, token, chain.chain_id, "Permit", message)
    with ape.reverts("ERC20: approve to the zero address"):
        token.permit(owner_, ZERO_ADDRESS, value, deadline, v, r, s, sender=stranger)


# ---------------------------------------------------------------- property


@given(
    value=st.integers(min_value=0, max_value=1_000 * TOKEN),
    after_offset=st.integers(min_value=1, max_value=10**6),
    before_offset=st.integers(min_value=1, max_value=10**8),
    to_index=st.integers(min_value=0, max_value=2),
)
def test_authorization_moves_exactly_value(
    chain, token, client, provider, keeper, stranger, verifier, authorize, value, after_offset, before_offset, to_index
):
    """Any valid window and amount: the payer loses exactly `value`, the payee gains it,
    the relayer nothing, and no token is created or destroyed. Each example signs a
    fresh random nonce and pins the block time, so examples do not depend on one another."""
    at = chain.pending_timestamp + 1
    receiver = (provider, keeper, stranger)[to_index]
    args = authorize(client, receiver, value, valid_after=max(at - after_offset, 0), valid_before=at + before_offset)
    supply = token.totalSupply()
    payer, payee, relayer = token.balanceOf(client), token.balanceOf(receiver), token.balanceOf(verifier)
    chain.pending_timestamp = at
    token.transferWithAuthorization(*args, sender=verifier)
    assert token.balanceOf(client) == payer - value
    assert token.balanceOf(receiver) == payee + value
    assert token.balanceOf(verifier) == relayer
    assert token.totalSupply() == supply
    assert token.authorizationState(client, args[5]) is True
