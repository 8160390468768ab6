"""Tabular data sets: rows of discrete and continuous features, encoded by :mod:`.tabular`.

- ``fair``: statsmodels' ``fair`` data (Fair, "A Theory of Extramarital Affairs", Journal of
  Political Economy 1978), 6,366 women surveyed by Redbook in 1974, shipped inside statsmodels
  (offline). The task is whether a woman reports any time spent in affairs (``affairs > 0``,
  32 % do; the ``affairs`` column itself is left out, it is the label). Discrete features: the
  marriage rating, religiousness, education and both occupations; continuous: age, years
  married and number of children (interval-coded numbers, compared in years and children).
- ``anes96``: statsmodels' ``anes96`` data (the 1996 American National Election Study, 944
  voters; Rosenstone et al., ANES 1996 Time Series Study), shipped inside statsmodels
  (offline). The task is the vote (Clinton or Dole). Discrete features: TV news days per week,
  the voter's and their view of each candidate's left-right placement, party identification,
  education and income bracket (24); continuous: age and the population of the voter's
  place (thousands). 69 encoded columns: wide enough for SPEAR's B = 32, which ``fair``'s 30
  columns are not (SPEAR needs B below the input width).
- ``adult``: UCI Adult (Kohavi, "Scaling Up the Accuracy of Naive-Bayes Classifiers",
  KDD 1996), 48,842 census rows, income above 50K, the tabular set of TabLeak and SPEAR;
  fetched from OpenML into ``data_dir`` (network on first use), a
  :class:`~fedleak.simulator.data.datasets.DatasetUnavailableError` offline. Missing values are
  their own category ``"?"``.

The encoder is fitted on every row (the schema and the scale of each column are public
knowledge of the task) and travels with both splits, so recovered rows decode to categories
and original units.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedleak.simulator.data.datasets import DatasetSplits, DatasetUnavailableError, as_splits
from fedleak.simulator.data.tabular import TabularEncoder, fit_encoder

FAIR_DISCRETE = ("rate_marriage", "religious", "educ", "occupation", "occupation_husb")
FAIR_CONTINUOUS = ("age", "yrs_married", "children")
ANES96_DISCRETE = ("TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "educ", "income")
ANES96_CONTINUOUS = ("age", "popul")
ADULT_DISCRETE = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
ADULT_CONTINUOUS = (
    "age",
    "fnlwgt",
    "education-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
)


def _with_encoder(splits: DatasetSplits, encoder: TabularEncoder) -> DatasetSplits:
    domain = encoder.domain()
    return DatasetSplits(
        train=replace(splits.train, domain=domain, encoder=encoder),
        test=replace(splits.test, domain=domain, encoder=encoder),
    )


def tabular_splits(
    name: str,
    columns: dict[str, Any],
    labels: np.ndarray,
    discrete: tuple[str, ...],
    continuous: tuple[str, ...],
    seed: int,
    test_fraction: float,
) -> DatasetSplits:
    """Encode ``columns``, split stratified and seeded, and attach the encoder."""
    encoder = fit_encoder(columns, discrete, continuous)
    rows = encoder.encode(columns)
    splits = as_splits((rows, labels), name, seed, test_fraction, int(labels.max()) + 1)
    return _with_encoder(splits, encoder)


def load_fair(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
    """statsmodels' ``fair``: 6,366 rows, 5 discrete + 3 continuous features, 2 classes."""
    from statsmodels.datasets import fair

    frame = fair.load_pandas().data
    columns = {c: frame[c].to_numpy() for c in (*FAIR_DISCRETE, *FAIR_CONTINUOUS)}
    labels = (frame["affairs"].to_numpy() > 0).astype(np.int64)
    return tabular_splits(
        "fair", columns, labels, FAIR_DISCRETE, FAIR_CONTINUOUS, seed, test_fraction
    )


def load_anes96(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
    """statsmodels' ``anes96``: 944 rows, 7 discrete + 2 continuous features, 2 classes."""
    from statsmodels.datasets import anes96

    frame = anes96.load_pandas().data
    columns = {c: frame[c].to_numpy() for c in (*ANES96_DISCRETE, *ANES96_CONTINUOUS)}
    labels = frame["vote"].to_numpy().astype(np.int64)
    return tabular_splits(
        "anes96", columns, labels, ANES96_DISCRETE, ANES96_CONTINUOUS, seed, test_fraction
    )


def load_adult(data_dir: Path, seed: int, test_fraction: float) -> DatasetSplits:
    """UCI Adult from OpenML (version 2): 48,842 rows, 8 discrete + 6 continuous, 2 classes."""
    from sklearn.datasets import fetch_openml

    root = Path(data_dir) / "openml"
    try:
        bunch = fetch_openml(
            "adult", version=2, as_frame=True, data_home=str(root), n_retries=1, delay=0.1
        )
    except Exception as exc:  # URLError, OSError, OpenML's own errors: all mean "not here"
        raise DatasetUnavailableError(
            f"dataset 'adult' is not in {root} and could not be fetched from OpenML "
            f"({type(exc).__name__}: {exc}). Run once with dataset=adult on a machine with "
            f"network access and copy {root} here, or use dataset=fair (tabular, offline)."
        ) from exc
    frame = bunch.frame
    columns: dict[str, Any] = {
        c: frame[c].astype(object).where(frame[c].notna(), "?").astype(str).to_numpy()
        for c in ADULT_DISCRETE
    }
    columns |= {c: frame[c].to_numpy(dtype=np.float64) for c in ADULT_CONTINUOUS}
    labels = (frame["class"].astype(str).str.strip() == ">50K").to_numpy().astype(np.int64)
    return tabular_splits(
        "adult", columns, labels, ADULT_DISCRETE, ADULT_CONTINUOUS, seed, test_fraction
    )
