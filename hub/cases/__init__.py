"""Pure case logic: states, screening, merging, SLA and closure decisions.

Nothing here does I/O: plain data and times in, decisions out. The engine
(:mod:`hub.engine`) applies them to the store inside one transaction.
"""
