"""The lean market (bench/lean/LeanMarket.vy): the one-shard path of a market that stores three
words for a shard, deployed on the real token and KeeperRegistry with a ComputeAsset of its own,
so its gas is measured on the same contracts and in the same scenario as JobMarket's."""

from typing import Any

import pytest
from lean_market import EXPIRE, MANIFEST, OUTPUT_ROOT, TOKEN, Lean, lean_container, lean_terms, snapshot_requirements

from computenet.deploy import DEFAULT_UNBONDING_DELAY, create_address
from computenet.receipts import ExecutionReceipt


@pytest.fixture
def lean(project, owner, stack, treasury, params, client, provider, agent, make_spec) -> Lean:
    predicted = create_address(owner.address, owner.nonce + 1)
    assets = owner.deploy(project.ComputeAsset, stack.token, DEFAULT_UNBONDING_DELAY, predicted)
    market = owner.deploy(lean_container(), stack.token, assets, stack.keepers, treasury.address, params.as_tuple())
    assert market.address == predicted
    for who in (client, provider):
        stack.token.approve(market, 2**256 - 1, sender=who)
        stack.token.approve(assets, 2**256 - 1, sender=who)
    receipt = assets.register(make_spec(expire=EXPIRE).as_tuple(), agent, b"\x11" * 32, sender=provider)
    asset = receipt.events.filter(assets.AssetRegistered)[0].asset
    assets.add_stake(asset, 1_000 * TOKEN, sender=provider)
    return Lean(market, assets, asset)


@pytest.fixture
def lean_lifecycle(lean, chain, client, keeper, registered_keeper, provider, agent, params):
    """`lean_lifecycle(gpu_seconds)`: one one-shard job through the lean market's post, assign,
    submit and finalize; returns {step: receipt}."""

    def run(gpu_seconds: int = 1_000) -> dict[str, Any]:
        req = snapshot_requirements()
        post = lean.market.post_job(MANIFEST, req.as_tuple(), sender=client)
        posted = post.events.filter(lean.market.JobPosted)[0]
        terms = lean_terms(client.address, MANIFEST, req, posted.keeper_fee_bps, posted.protocol_fee_bps)
        assign = lean.market.assign(posted.job, terms, 0, lean.asset, sender=keeper)
        chain.pending_timestamp += gpu_seconds  # the run takes its metered time
        signature = ExecutionReceipt(
            job=posted.job,
            shard=0,
            replica=0,
            lease=1,
            asset=lean.asset,
            manifest=MANIFEST,
            output_root=OUTPUT_ROOT,
            gpu_seconds=gpu_seconds,
            exit_code=0,
        ).sign(agent.private_key, chain.chain_id, lean.market.address)
        submit = lean.market.submit_result(
            posted.job, terms, 0, OUTPUT_ROOT, gpu_seconds, 0, signature, sender=provider
        )
        chain.mine(deltatime=params.challenge_window + 1)
        finalize = lean.market.finalize(posted.job, terms, 0, sender=keeper)
        return {"post": post, "assign": assign, "submit": submit, "finalize": finalize}

    return run
