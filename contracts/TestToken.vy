# pragma version ~=0.4.3
"""
@title computenet test dollar
@notice A 6-decimal stand-in for USDC on local chains: ERC-20, EIP-2612 permit and
        EIP-3009 authorizations with USDC's interface and revert wording, plus a faucet
        that works only on local chain ids. On a public network the market uses real USDC.
"""

from .modules import eip712
from .modules import eip2612
from .modules import eip3009
from .modules import erc20

initializes: eip712
initializes: erc20
initializes: eip2612[eip712 := eip712, erc20 := erc20]
initializes: eip3009[eip712 := eip712, erc20 := erc20]

exports: (
    erc20.__interface__,
    eip712.DOMAIN_SEPARATOR,
    eip2612.permit,
    eip2612.nonces,
    eip3009.__interface__,
)

# @dev The EIP-712 domain version; USDC's is "2".
_VERSION: constant(String[20]) = "2"
# @dev Chain ids of anvil (31337) and ape's in-process test chain (1337).
_ANVIL_CHAIN_ID: constant(uint256) = 31337
_TEST_CHAIN_ID: constant(uint256) = 1337
# @dev Most one faucet call hands out: 1,000,000 tokens.
FAUCET_LIMIT: public(constant(uint256)) = 10**12


@deploy
def __init__(name_: String[50]):
    """
    @param name_ Token name, which is also its EIP-712 domain name.
    """
    eip712.__init__(name_, _VERSION)
    erc20.__init__(name_, "cnUSD", 6)


@external
@pure
def version() -> String[20]:
    """
    @notice The EIP-712 domain version, as USDC exposes it.
    @return "2".
    """
    return _VERSION


@external
def faucet(receiver: address, amount: uint256):
    """
    @notice Mints test tokens; only on local chains.
    @param receiver Who gets the tokens.
    @param amount Base units, at most FAUCET_LIMIT.
    """
    assert chain.id == _ANVIL_CHAIN_ID or chain.id == _TEST_CHAIN_ID, "test_token: faucet only on local chains"
    assert amount <= FAUCET_LIMIT, "test_token: faucet limit exceeded"
    erc20._mint(receiver, amount)
