"""Verdicts become labels (issue 22 part 1): operators' verdicts on camera snapshots, and
the negatives of ``false_alarm`` closures, kept as a labelled-examples dataset on the hub
with its own retention, exported in the real-photo manifest format for a retrain.

* :mod:`.rules` — pure: the classes, the verdicts, what a verdict stores;
* :mod:`.config` — ``dataset:`` in hub.yaml;
* :mod:`.service` — the hub's side: copy the snapshot, store the row, prune;
* :mod:`.export` — ``cityops-hub dataset export`` and ``stats``.

The rows are ``dataset_examples`` (hub/store/sqlite_dataset.py); docs/hub.md, "Labelled
examples".
"""
