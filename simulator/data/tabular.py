"""Tabular rows as the tabular attacks assume them, and back.

A row of discrete and continuous features becomes one flat float32 vector: every discrete
feature a one-hot block over its categories, every continuous one standardised to zero mean
and unit variance over the training data (the encoding of Vero et al., "TabLeak: Tabular
Data Leakage in Federated Learning", ICML 2023, and of Dimitrov et al., "SPEAR: Exact
Gradient Inversion of Batches in Federated Learning", NeurIPS 2024). :meth:`decode` maps a
recovered vector back: each block to its most likely category, each continuous column to
original units.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedleak.attacks.types import InputDomain

__all__ = ["Feature", "TabularEncoder", "category_label", "fit_encoder"]


@dataclass(frozen=True)
class Feature:
    """One column of the table.

    Attributes
    ----------
    name : str
        Column name.
    categories : tuple[str, ...]
        The categories of a discrete feature, in block order; empty for a continuous one.
    mean, std : float
        Standardisation of a continuous feature (``x = (value - mean) / std``).
    """

    name: str
    categories: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @property
    def discrete(self) -> bool:
        """Whether the feature is one-hot encoded."""
        return bool(self.categories)

    @property
    def width(self) -> int:
        """Columns the feature takes in the encoded row."""
        return len(self.categories) if self.discrete else 1


@dataclass(frozen=True)
class TabularEncoder:
    """Encodes table rows to flat vectors and decodes recovered vectors to rows.

    Attributes
    ----------
    features : tuple[Feature, ...]
        The columns, in encoded order.
    """

    features: tuple[Feature, ...]

    @property
    def width(self) -> int:
        """Length of an encoded row."""
        return sum(f.width for f in self.features)

    def spans(self) -> list[tuple[Feature, int, int]]:
        """``(feature, start, stop)``: the encoded columns of each feature."""
        out, start = [], 0
        for feature in self.features:
            out.append((feature, start, start + feature.width))
            start += feature.width
        return out

    def domain(self) -> InputDomain:
        """The public schema an attacker knows: unbounded values, the one-hot blocks."""
        groups = tuple((a, b) for f, a, b in self.spans() if f.discrete)
        return InputDomain(modality="tabular", low=None, high=None, discrete_groups=groups)

    def encode(self, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        """``(N, width)`` float32 rows of the columns ``{name: values}``.

        Raises
        ------
        ValueError
            For a category the encoder does not know (naming the feature and its categories).
        """
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros((n, self.width), dtype=np.float32)
        for feature, start, _ in self.spans():
            values = columns[feature.name]
            if not feature.discrete:
                numbers = np.asarray(values, dtype=np.float64)
                out[:, start] = (numbers - feature.mean) / feature.std
                continue
            index = {c: i for i, c in enumerate(feature.categories)}
            for row, value in enumerate(values):
                if category_label(value) not in index:
                    raise ValueError(
                        f"feature {feature.name!r}: unknown category {value!r}; "
                        f"known: {list(feature.categories)}"
                    )
                out[row, start + index[category_label(value)]] = 1.0
        return out

    def discrete_codes(self, rows: np.ndarray) -> np.ndarray:
        """``(N, D)`` category index (argmax of each one-hot block) per discrete feature."""
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        blocks = [rows[:, a:b].argmax(axis=1) for f, a, b in self.spans() if f.discrete]
        return np.stack(blocks, axis=1) if blocks else np.zeros((len(rows), 0), np.int64)

    def continuous_values(self, rows: np.ndarray) -> np.ndarray:
        """``(N, K)`` continuous features in original units."""
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        cols = [rows[:, a] * f.std + f.mean for f, a, _ in self.spans() if not f.discrete]
        return np.stack(cols, axis=1) if cols else np.zeros((len(rows), 0))

    def decode(self, rows: np.ndarray) -> list[dict[str, str | float]]:
        """Recovered vectors as rows ``{feature: category or value in original units}``."""
        codes, values = self.discrete_codes(rows), self.continuous_values(rows)
        out: list[dict[str, str | float]] = []
        for i in range(len(codes)):
            row: dict[str, str | float] = {}
            d = c = 0
            for feature in self.features:
                if feature.discrete:
                    row[feature.name] = feature.categories[int(codes[i, d])]
                    d += 1
                else:
                    row[feature.name] = float(values[i, c])
                    c += 1
            out.append(row)
        return out

    def to_json(self) -> str:
        """The encoder as JSON (the run directory keeps it for the report)."""
        return json.dumps([vars(f) | {"categories": list(f.categories)} for f in self.features])

    @classmethod
    def from_json(cls, text: str) -> TabularEncoder:
        """Inverse of :meth:`to_json`."""
        rows = json.loads(text)
        return cls(tuple(Feature(**f | {"categories": tuple(f["categories"])}) for f in rows))


def fit_encoder(
    columns: dict[str, Sequence[Any]], discrete: Sequence[str], continuous: Sequence[str]
) -> TabularEncoder:
    """Fit the encoder on (training) columns: categories sorted, mean and std measured.

    Discrete features come first, then continuous ones, each in the order given. A constant
    continuous column keeps ``std`` 1 (nothing to scale).
    """
    features = [
        Feature(name, tuple(sorted({category_label(v) for v in columns[name]}, key=_natural)))
        for name in discrete
    ]
    for name in continuous:
        values = np.asarray(columns[name], dtype=np.float64)
        std = float(values.std())
        features.append(Feature(name, mean=float(values.mean()), std=std if std > 0 else 1.0))
    return TabularEncoder(tuple(features))


def category_label(value: Any) -> str:
    """A category as text: integral numbers without a fraction (``5.0`` -> ``"5"``)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _natural(category: str) -> tuple[int, float, str]:
    """Numbers in numeric order (``"2.0" < "10.0"``), before any text."""
    try:
        return (0, float(category), category)
    except ValueError:
        return (1, 0.0, category)
