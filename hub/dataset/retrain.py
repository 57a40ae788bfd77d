"""``cityops-hub dataset retrain``: the operators' verdicts → a candidate model → the gate →
a release, in one command an operator (or a nightly timer) runs on the hub.

1. The examples (optionally of one camera, or since a date) are exported in the real-photo
   format (:func:`hub.dataset.export.export_dataset`) into ``OUT/verdicts``.
2. ``python -m training.retrain`` runs as a child process (it needs the ``train`` extra;
   the hub process never imports TensorFlow) and writes ``OUT/candidate`` with
   ``gate.json``.
3. Only when the gate passed is the candidate stored as the next release of ``--name``,
   with the gate's figures (``cityops-hub release rollout`` then ships it to a canary).
   A refused candidate is never stored; the reasons are printed and the exit status is 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import CityopsError

__all__ = ["RetrainOutcome", "trainer_command"]

EXIT_REFUSED = 3  # training.retrain's status when its gate refused the candidate


@dataclass(frozen=True)
class RetrainOutcome:
    passed: bool
    reasons: list[str]
    gate_file: Path
    candidate: Path


def trainer_command(verdicts: Path, base: Path, out: Path, *, real: Path | None, epochs: int,
                    max_minutes: float | None, quick: bool) -> list[str]:
    cmd = [sys.executable, "-m", "training.retrain", "--verdicts", str(verdicts), "--base", str(base),
           "--out", str(out), "--epochs", str(epochs)]
    if real is not None:
        cmd += ["--real", str(real)]
    if max_minutes is not None:
        cmd += ["--max-minutes", str(max_minutes)]
    if quick:
        cmd += ["--quick", "--rendered-images", "8"]
    return cmd


def run_trainer(cmd: list[str], candidate: Path) -> RetrainOutcome:
    """Run the trainer (its log goes to our stderr) and read its gate."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
    except OSError as exc:
        raise CityopsError(f"cannot start the trainer ({exc})") from None
    assert proc.stdout is not None
    for line in proc.stdout:  # its log, as it goes
        sys.stderr.write(line)
    code = proc.wait()
    gate_file = candidate / "gate.json"
    if code not in (0, EXIT_REFUSED) or not gate_file.is_file():
        hint = (" (is the train extra installed? pip install '.[train]')" if code == 1 else "")
        raise CityopsError(f"the retrain failed with status {code}{hint}; its log is above")
    gate = json.loads(gate_file.read_text(encoding="utf-8"))
    return RetrainOutcome(bool(gate.get("passed")) and code == 0, list(gate.get("reasons", [])),
                          gate_file, candidate)
