"""Keeper bot commands (settings from COMPUTENET_KEEPER_* variables; README lists them):

    ape run keeper start  --network http://127.0.0.1:8545 --workers 2   # listener + workers
    ape run keeper listen --network ...                                 # the listener alone
    ape run keeper worker --network ...                                 # one more worker
    ape run keeper status --network ...                                 # cursor, queue, last actions

With no COMPUTENET_KEEPER_ACCOUNT the keeper runs dry: it logs what it would send.
"""

import os

from ape.cli import ConnectedProviderCommand, network_option

from keepers.main import commands

cli = commands(
    command_kwargs={"cls": ConnectedProviderCommand},
    options=[network_option(default=os.environ.get("COMPUTENET_KEEPER_NETWORK") or "http://127.0.0.1:8545")],
)
