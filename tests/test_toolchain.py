"""The test toolchain runs against a real anvil node through ape-foundry."""


def test_provider_is_anvil(chain, networks):
    assert networks.provider.name == "foundry"
    assert chain.chain_id == 31337
