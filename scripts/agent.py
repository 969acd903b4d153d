"""GPU agent commands (settings from COMPUTENET_AGENT_* variables; README lists them):

ape run agent run --network http://127.0.0.1:8545     # serve the configured assets
ape run agent status                                  # the journal: leases per state
ape run agent image                                   # build the Python job image
ape run agent store --dir .store --port 8700          # serve a content-store folder
"""

import os

from ape.cli import ConnectedProviderCommand, network_option

from agent.main import commands

cli = commands(
    command_kwargs={"cls": ConnectedProviderCommand},
    options=[network_option(default=os.environ.get("COMPUTENET_AGENT_NETWORK") or "http://127.0.0.1:8545")],
)
