"""computenet.localnet: real anvil and redis-server child processes."""

import socket

import pytest

from computenet.localnet import Anvil, DockerEngine, RedisServer, ServiceError, mounted, wait_until


def test_anvil_mines_on_demand_then_every_second_then_on_demand_again(tmp_path):
    with Anvil(log=tmp_path / "anvil.log") as anvil:
        assert int(anvil.rpc("eth_chainId"), 16) == 31337
        assert int(anvil.rpc("eth_blockNumber"), 16) == 0  # nothing sent, nothing mined
        anvil.interval_mining(1)
        assert anvil.rpc("anvil_getAutomine") is False
        wait_until(lambda: int(anvil.rpc("eth_blockNumber"), 16) >= 2, 10, "two empty interval blocks")
        anvil.interval_mining(0)
        assert anvil.rpc("anvil_getAutomine") is True
        with pytest.raises(ServiceError, match="anvil no_such_method"):
            anvil.rpc("no_such_method")
    assert anvil.process.poll() is not None  # stopped with the block


def test_a_service_that_cannot_start_says_why(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServiceError, match="redis-server exited with code"):
            RedisServer(tmp_path, port=port, log=tmp_path / "redis.log")


def test_redis_server_serves_the_databases_asked_for(tmp_path):
    with RedisServer(tmp_path, databases=4) as server:
        server.client(3).set("k", "v")
        assert server.client(3).get("k") == b"v" and server.client(0).get("k") is None
        assert server.url(3).endswith("/3")


def test_wait_until_returns_the_value_or_names_what_it_waited_for():
    assert wait_until(lambda: 42, 1, "an answer") == 42
    with pytest.raises(TimeoutError, match="waiting for the impossible"):
        wait_until(lambda: None, 0.05, "the impossible")


def test_a_private_docker_engine_falls_back_to_the_next_storage_driver(tmp_path):
    import os
    import shutil

    if shutil.which("dockerd") is None or os.geteuid() != 0:
        pytest.skip("needs dockerd and root (`make test` installs docker.io when it can)")
    with DockerEngine(tmp_path, log=tmp_path / "dockerd.log", storage_drivers=("no-such-driver", "vfs")) as engine:
        assert engine.storage_driver == "vfs"
        assert not mounted(tmp_path / "no-such-driver" / "data")  # the failed try left no mount behind
        assert engine.client().info()["Driver"] == "vfs"
    assert engine.process.poll() is not None
    with pytest.raises(ServiceError, match="did not start with any storage driver: no-such-driver"):
        DockerEngine(tmp_path / "again", storage_drivers=("no-such-driver",))
    assert not mounted(tmp_path / "again" / "no-such-driver" / "data")


def test_http_ok_is_true_only_for_a_200():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from computenet.localnet import ServedApp, free_port, http_ok

    app = FastAPI()
    app.get("/health")(lambda: {"status": "ok"})
    app.get("/down")(lambda: JSONResponse({"status": "down"}, status_code=503))
    served = ServedApp(app)
    try:
        assert http_ok(f"{served.url}/health")
        assert not http_ok(f"{served.url}/down")
        assert not http_ok(f"{served.url}/missing")
    finally:
        served.stop()
    assert not http_ok(f"http://127.0.0.1:{free_port()}/health", timeout=0.5)
