"""Where a phase's files go: `<output_dir>/<task>/<phase>/` and the files in it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from power_bert_tf.training.checkpoints import MODEL_FILE, RUN_FILE


@dataclasses.dataclass(frozen=True)
class PhaseFolder:
    """One phase's folder.

    Attributes:
        path: `<output_dir>/<task>/<phase>`.
    """

    path: Path

    @property
    def model(self) -> Path:
        """The phase's model (`model.keras`): best dev epoch, or last for the search."""
        return self.path / MODEL_FILE

    @property
    def run_record(self) -> Path:
        """`run.json`: command, config, versions, wall time, results; written last."""
        return self.path / RUN_FILE

    @property
    def history(self) -> Path:
        """`history.json`: one entry per finished epoch."""
        return self.path / "history.json"

    @property
    def settings(self) -> Path:
        """`settings.json`: what the phase's training depends on, as it was begun
        (`RunConfig.training_settings` and its start model's SHA-256); a resume must
        match it."""
        return self.path / "settings.json"

    @property
    def retention(self) -> Path:
        """`retention.json` (search): the retention configuration with its N, origin
        and masses."""
        return self.path / "retention.json"

    @property
    def trajectory(self) -> Path:
        """`controller.json` (search with a target): the controller's per-step record."""
        return self.path / "controller.json"

    @property
    def state(self) -> Path:
        """`state/`: the resumable training state (checkpoints of each epoch)."""
        return self.path / "state"

    @property
    def logs(self) -> Path:
        """`logs/`: TensorBoard summaries."""
        return self.path / "logs"

    def finished(self) -> bool:
        return self.run_record.is_file()
