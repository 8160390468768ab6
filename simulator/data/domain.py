"""What the auditor and the report need to know of a run's data: modality and encoder.

The recorder writes it into the run directory (``domain.json``) when the run starts, so a
report rebuilt later (``fedleak report``) draws signals as lines and decodes table rows
without loading the data set again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedleak.simulator.data.datasets import ArrayDataset
from fedleak.simulator.data.tabular import TabularEncoder

DOMAIN_FILE = "domain.json"
"""File name of the data domain inside a run directory."""


@dataclass(frozen=True)
class DataDomain:
    """A run's data modality (``image``, ``tabular``, ``signal``) and, for tables, encoder."""

    modality: str = "image"
    encoder: TabularEncoder | None = None

    @classmethod
    def of(cls, dataset: ArrayDataset) -> DataDomain:
        """The domain of a loaded data set."""
        return cls(dataset.domain.modality, dataset.encoder)

    def write(self, run_dir: Path) -> Path:
        """Write ``domain.json`` into ``run_dir``."""
        encoder = json.loads(self.encoder.to_json()) if self.encoder is not None else None
        target = Path(run_dir) / DOMAIN_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"modality": self.modality, "encoder": encoder}) + "\n")
        return target

    @classmethod
    def read(cls, run_dir: Path) -> DataDomain:
        """The domain a run wrote; images when the file is missing (runs before it existed)."""
        source = Path(run_dir) / DOMAIN_FILE
        if not source.is_file():
            return cls()
        raw = json.loads(source.read_text(encoding="utf-8"))
        encoder = raw.get("encoder")
        decoded = TabularEncoder.from_json(json.dumps(encoder)) if encoder else None
        return cls(str(raw.get("modality", "image")), decoded)
