# pragma version ~=0.4.3
# pragma experimental-codegen
"""
@title computenet authorization funder
@notice How an x402 payment becomes a job: a facilitator brings the payer's EIP-3009
        authorization of exactly the job's quote to the market, and this contract
        has the token move it there and the market post the job for the payer (who
        needs no gas). Each authorization funds one job at most.
@dev Holds no funds and no role over anyone's money: the market escrows or credits
     through its FUNDER hooks only tokens already there and owed to no one, so a
     wrong call here can at worst be refused. The authorization's payee is the
     market, as in the x402 requirements the gateway offers.
"""

from ethereum.ercs import IERC20

from . import JobMarket
from .modules import ecdsa

# @dev The EIP-3009 part of the payment token (USDC's interface).
interface IEIP3009:
    def transferWithAuthorization(
        payer: address,
        payee: address,
        amount: uint256,
        valid_after: uint256,
        valid_before: uint256,
        nonce: bytes32,
        v: uint8,
        r: bytes32,
        s: bytes32,
    ): nonpayable
    def authorizationState(authorizer: address, nonce: bytes32) -> bool: view
    def DOMAIN_SEPARATOR() -> bytes32: view


_TRANSFER_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)


# @dev An EIP-3009 authorization's terms, less the amount (the job's quote) and payee (the market).
struct Authorization:
    payer: address
    valid_after: uint256
    valid_before: uint256
    nonce: bytes32


# @dev The job market, which names this contract as its FUNDER.
MARKET: public(immutable(JobMarket.__interface__))
# @dev The market's payment token.
TOKEN: public(immutable(IEIP3009))

# @dev keccak256(payer, nonce) -> the job an authorization funded (max uint256: returned unclaimed).
_funded_by: HashMap[bytes32, uint256]


event JobFundedByAuthorization:
    job: indexed(uint256)
    payer: indexed(address)
    nonce: bytes32
    front_run: bool  # the authorization reached the token before this call


event UnclaimedReturned:
    payer: indexed(address)
    nonce: bytes32
    amount: uint256


@deploy
def __init__(market: JobMarket.__interface__, token: IERC20):
    """
    @param market The JobMarket.
    @param token Its payment token.
    """
    MARKET = market
    TOKEN = IEIP3009(token.address)


@external
@nonreentrant
def post_job_with_authorization(
    manifest_hash: bytes32,
    req: JobMarket.Requirements,
    auth: Authorization,
    front_run: bool,
    v: uint8,
    r: bytes32,
    s: bytes32,
) -> uint256:
    """
    @notice Posts a job for `auth.payer`, funded by the payer's EIP-3009
            `transferWithAuthorization` of exactly `MARKET.quote(req)` to the market
            (the market's facilitators only, who bind each payment to the job it was
            offered for).
    @dev If someone else submitted the signed authorization to the token first
         (`front_run`), its tokens are already at the market, owed to no one; this
         then checks the payer's signature and that the nonce is used, and the job
         is posted without a second transfer. A nonce can also be used up by the
         payer's own `cancelAuthorization`, which the chain cannot tell apart, so a
         facilitator claims `front_run` only after seeing the token's transfer of
         this authorization to the market mined; whatever it claims, the market
         escrows only tokens that are there and owed to no one.
    @param manifest_hash keccak256 of the job's canonical JSON manifest.
    @param req The job's requirements.
    @param auth The authorization's payer, validity window and nonce.
    @param front_run Whether the authorization was already executed by someone else.
    @param v Authorization signature v.
    @param r Authorization signature r.
    @param s Authorization signature s.
    @return The job id.
    """
    key: bytes32 = self._unused(auth)
    budget: uint256 = staticcall MARKET.quote(req)
    if front_run:
        self._check_spent(auth, budget, v, r, s)
    else:
        extcall TOKEN.transferWithAuthorization(
            auth.payer, MARKET.address, budget, auth.valid_after, auth.valid_before, auth.nonce, v, r, s
        )
    job_id: uint256 = extcall MARKET.post_job_for(auth.payer, manifest_hash, req)
    self._funded_by[key] = job_id
    log JobFundedByAuthorization(job=job_id, payer=auth.payer, nonce=auth.nonce, front_run=front_run)
    return job_id


@external
@nonreentrant
def return_unclaimed(auth: Authorization, amount: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Credits a payer, in the market, the tokens of an authorization that was
            executed straight at the token (front-run) and never funded a job, so
            they can withdraw them (the market's facilitators only, who first find
            the token's transfer to the market).
    @dev Once per authorization, and only from tokens at the market owed to no one.
    @param auth The authorization's payer, validity window and nonce.
    @param amount The amount it transferred.
    @param v Authorization signature v.
    @param r Authorization signature r.
    @param s Authorization signature s.
    """
    key: bytes32 = self._unused(auth)
    assert amount > 0, "authorization_funder: zero amount"
    self._check_spent(auth, amount, v, r, s)
    self._funded_by[key] = max_value(uint256)  # returned: it funds no job now
    extcall MARKET.credit_surplus(auth.payer, amount)
    log UnclaimedReturned(payer=auth.payer, nonce=auth.nonce, amount=amount)


@external
@view
def funded_by(payer: address, nonce: bytes32) -> uint256:
    """
    @notice The job an EIP-3009 authorization funded (zero: none; max uint256: its
            tokens were returned unclaimed).
    @param payer The authorization's payer.
    @param nonce The authorization's nonce.
    @return The job id.
    """
    return self._funded_by[keccak256(abi_encode(payer, nonce))]


@internal
@view
def _unused(auth: Authorization) -> bytes32:
    """
    @dev Reverts unless the caller is a market facilitator and the authorization has
         not funded a job nor been returned; returns its key.
    """
    assert staticcall MARKET.is_facilitator(msg.sender), "authorization_funder: caller is not a facilitator"
    key: bytes32 = keccak256(abi_encode(auth.payer, auth.nonce))
    assert self._funded_by[key] == 0, "authorization_funder: authorization already funded a job"
    return key


@internal
@view
def _check_spent(auth: Authorization, amount: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @dev Reverts unless the payer signed a transfer of `amount` to the market under
         `auth` and the token has used its nonce.
    """
    assert staticcall TOKEN.authorizationState(auth.payer, auth.nonce), "authorization_funder: authorization not used"
    digest: bytes32 = keccak256(
        concat(
            x"1901",
            staticcall TOKEN.DOMAIN_SEPARATOR(),
            keccak256(
                abi_encode(
                    _TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
                    auth.payer,
                    MARKET.address,
                    amount,
                    auth.valid_after,
                    auth.valid_before,
                    auth.nonce,
                )
            ),
        )
    )
    signer: address = ecdsa._recover_vrs(digest, convert(v, uint256), convert(r, uint256), convert(s, uint256))
    assert signer == auth.payer and signer != empty(address), "authorization_funder: authorization not signed by payer"
