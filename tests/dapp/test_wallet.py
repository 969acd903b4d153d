"""The test wallet itself (wallet.js), in a page the gateway serves: what the dApp's tests rely on
it for, checked against the demo network's anvil, so a failure there is not blamed on the page."""

from dapp_steps import wallet_script

DISCOVER = """() => new Promise((resolve) => {
    window.addEventListener("eip6963:announceProvider", (e) => resolve(e.detail.info), { once: true });
    window.dispatchEvent(new Event("eip6963:requestProvider"));
})"""

SWITCH = """async () => {
    const provider = window.__wallet.provider, seen = [];
    provider.on("chainChanged", (id) => seen.push(id));
    const before = await provider.request({ method: "eth_chainId" });
    const accountsBefore = await provider.request({ method: "eth_accounts" });
    const accounts = await provider.request({ method: "eth_requestAccounts" });
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: "0x7a69" }] });
    return { before, accountsBefore, accounts, after: await provider.request({ method: "eth_chainId" }), seen };
}"""

SEND = """async ([from, to, value]) => {
    try {
        return { hash: await window.__wallet.provider.request({
            method: "eth_sendTransaction", params: [{ from, to, value }] }) };
    } catch (error) {
        return { code: error.code, message: error.message };
    }
}"""


def test_the_wallet_announces_itself_switches_chain_forwards_to_anvil_and_rejects_on_request(browser, demo_net):
    owner, treasury = demo_net.account("owner"), demo_net.account("treasury")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(script=wallet_script(demo_net.rpc_url, owner, demo_net.chain_id, chain_id=1))
        page.goto(demo_net.info["gateway_url"] + "/health")

        info = page.evaluate(DISCOVER)
        assert info["name"] == "computenet test wallet" and info["rdns"] == "org.computenet.testwallet"
        assert info["icon"].startswith("data:image/svg+xml,") and len(info["uuid"]) == 36

        chain = page.evaluate(SWITCH)
        assert chain == {
            "before": "0x1",
            "accountsBefore": [],
            "accounts": [owner],
            "after": hex(demo_net.chain_id),
            "seen": [hex(demo_net.chain_id)],
        }

        before = demo_net.eth_balance(treasury)
        sent = page.evaluate(SEND, [owner, treasury, hex(12_345)])
        assert "hash" in sent, sent
        receipt = demo_net.web3.eth.wait_for_transaction_receipt(sent["hash"], timeout=15)
        assert receipt["status"] == 1 and receipt["from"] == owner
        assert demo_net.eth_balance(treasury) - before == 12_345

        page.evaluate("() => { window.__wallet.rejectNext = true; }")
        rejected = page.evaluate(SEND, [owner, treasury, hex(1)])
        assert rejected["code"] == 4001
        assert demo_net.eth_balance(treasury) - before == 12_345
        requests = page.evaluate("() => window.__wallet.requests")
        assert [r["method"] for r in requests][-2:] == ["eth_sendTransaction", "eth_sendTransaction"]
        assert requests[-1].get("rejected") is True and "rejected" not in requests[-2]
    finally:
        context.close()
