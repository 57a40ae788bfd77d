"""The hub's store: a small repository interface (:mod:`hub.store.repo`) and its SQLite
implementation (:mod:`hub.store.sqlite`), schema migrations (:mod:`hub.store.schema`) and
the content-addressed snapshot files (:mod:`hub.store.files`)."""
