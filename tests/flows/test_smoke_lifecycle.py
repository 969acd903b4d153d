def test_one_shard_lifecycle(chain, market, token, client, provider, keeper, agent, register_asset, post_job, registered_keeper, submit, params, treasury, make_requirements, assets, make_spec):
    for i in range(2):
        r0 = assets.register(make_spec().as_tuple(), agent, b"\x11" * 32, sender=provider)
        asset = r0.events[-1].asset
        assets.add_stake(asset, 1000 * 10**6, sender=provider)
        rp = market.post_job(__import__("eth_utils").keccak(b"manifest"), make_requirements().as_tuple(), sender=client)
        job = rp.events.filter(market.JobPosted)[0].job
        r1 = market.assign(job, 0, asset, sender=keeper)
        r2 = submit(agent, job, 0, 0, gpu_seconds=1000)
        chain.mine(deltatime=params.challenge_window + 1)
        r3 = market.finalize(job, 0, sender=keeper)
        print("\ngas register", r0.gas_used, "post", rp.gas_used, "assign", r1.gas_used, "submit", r2.gas_used, "finalize", r3.gas_used, "total", rp.gas_used + r1.gas_used + r2.gas_used + r3.gas_used)
