"""Accounts, roles, login sessions, CSRF, login rate limiting and API tokens.

Pure decisions (who may do what, is this login allowed now) live in :mod:`roles` and
:mod:`ratelimit`; :mod:`accounts` applies them to the repository; the web layer
(:mod:`hub.web.security`) only reads cookies and headers and calls these.
"""
