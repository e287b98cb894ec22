"""A local Kalshi exchange for order groups: signed /trade-api/v2 endpoints, rolling-window
semantics, exchange-side rate limits, injectable faults and a /_sim/ control API. The same
port serves the order_group_updates WebSocket channel at /trade-api/ws/v2 (websocket.py).

It imports nothing from the panel and checks signatures with its own code.
Run it with `python -m ogpanel.simulator`, or in-process:

    sim = start()                      # loopback, free port, daemon thread
    sim.add_key("key-id", public_pem)
    ... point a client at sim.base_url ...
    sim.stop()
"""

from ogpanel.simulator.exchange import Clock, ExchangeError
from ogpanel.simulator.requestlog import RequestRecord
from ogpanel.simulator.server import SimulatorServer, start

__all__ = ["Clock", "ExchangeError", "RequestRecord", "SimulatorServer", "start"]
