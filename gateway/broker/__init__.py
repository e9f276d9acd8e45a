"""The broker for a backend CSMS (forward mode): Redis Streams between charge points and backend.

keys.py            key names under the prefix (Redis Cluster hash tags)
envelope.py        sans-IO: envelopes of CALLs, SENDs, session events; answers judged per version
command_format.py  sans-IO: the backend's commands and their results
streams.py         the call stream: append once (Lua, one round trip, optional WAIT), answers kept
forwarding.py      the CallHandler: forward, wait for the answer (or find another node's), fallback
replies.py         this node's reply stream: one XREAD BLOCK loop resolving waiting CALLs by id
presence.py        connected/disconnected events of this node's sessions
commands.py        the backend's commands: consumer group, free slots, kept fresh, reclaim
command_ledger.py  the backend's commands run once: command ids, results, leases of running ones
service.py         BrokerService: wires them for one gateway node
"""
