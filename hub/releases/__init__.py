"""Model releases and staged rollouts, hub side (issue 22, docs/hub.md "Model releases").

* :mod:`.model`: the rows (a release, a rollout and its stages, an agent's desired release
  and latest report).
* :mod:`.package`: a model folder or zip made into a checked package, stored by the hub.
* :mod:`.rollout`: the pure decisions: whether a rollout waits, promotes its canary to
  every agent in scope, is done, or rolls back, and why.
* :mod:`.plan`: starting and rolling back a rollout inside one store transaction.
* :mod:`.serve`: chunks served to the agents that asked for their desired release, at a
  bounded rate (a token bucket).
* :mod:`.service`: the running hub's part: its own MQTT client (``fetch`` and the
  retained ``release_state``), desired releases published retained, the rollout loop.

The wire contract is :mod:`protocol.releases`.
"""
