"""New chain heads, pushed by the node over its websocket (`eth_subscribe` "newHeads"), so the
agent's loop looks at the chain the moment a block is mined instead of at its next poll.

They only wake the loop early: what is read, and the cursor, stay the Follower's, and the
loop still polls every `poll_interval`, so a node without a websocket, or one that drops it,
costs latency, never an assignment. A dropped subscription is made again after RETRY seconds.
"""

from __future__ import annotations

import json
import logging
import threading

log = logging.getLogger("agent.heads")

RETRY = 10  # seconds between tries to subscribe again
WAIT = 1  # seconds a read blocks before it looks at `stop` again


class HeadNotices(threading.Thread):
    """Sets `woke` on each new head the node at `uri` (ws:// or wss://) announces, until `stop`."""

    def __init__(self, uri: str, woke: threading.Event, stop: threading.Event) -> None:
        super().__init__(name="heads", daemon=True)
        self.uri, self.woke, self.stop = uri, woke, stop
        self.live = threading.Event()  # subscribed now

    def run(self) -> None:
        warned = False
        while not self.stop.is_set():
            try:
                self.follow()
            except Exception as error:  # no websocket there, refused, dropped: the poll goes on
                again = warned and not self.live.is_set()  # still none: said already
                (log.debug if again else log.warning)(
                    "no head notices: polling only",
                    extra={"fields": {"uri": self.uri, "error": f"{type(error).__name__}: {error}"}},
                )
                warned = True
            self.live.clear()
            self.stop.wait(RETRY)

    def follow(self) -> None:
        from websockets.sync.client import connect

        with connect(self.uri, open_timeout=WAIT * 5, close_timeout=WAIT) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
            reply = json.loads(ws.recv(timeout=WAIT * 5))
            if "result" not in reply:
                raise ConnectionError(f"eth_subscribe refused: {reply.get('error')}")
            self.live.set()
            log.info("head notices", extra={"fields": {"uri": self.uri}})
            while not self.stop.is_set():
                try:
                    ws.recv(timeout=WAIT)
                except TimeoutError:
                    continue
                self.woke.set()
