"""Ingest: MQTT receivers (:mod:`.receiver`), message classification (:mod:`.decode`),
per-agent sequence tracking and acks (:mod:`.seqs`)."""
