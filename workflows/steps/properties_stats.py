"""Statistics shared by the property analyses: block averages and a weighted straight-line fit.

Pure numpy, no FireWorks and no database. MD samples are correlated in time, so the error of a
time average is estimated from the scatter of the means of ``n_blocks`` consecutive blocks (each
much longer than the correlation time), not from the scatter of the samples themselves
(Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989); Allen & Tildesley, ch. 8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Blocks per time series unless the caller says otherwise: five blocks give a usable standard error
#: (four degrees of freedom) from runs of a few hundred picoseconds.
DEFAULT_BLOCKS = 5


@dataclass(frozen=True)
class BlockAverage:
    """The mean of a time series and its standard error from block averaging.

    Attributes:
        mean: mean over the blocks used (the series' unit).
        error: standard error of the mean, ``std(block means, ddof=1) / sqrt(n_blocks)``.
        n_blocks: blocks used.
        block_size: samples per block (samples past ``n_blocks * block_size`` are left out).
    """

    mean: float
    error: float
    n_blocks: int
    block_size: int

    def as_dict(self) -> dict:
        return asdict(self)


def block_average(series, n_blocks: int = DEFAULT_BLOCKS) -> BlockAverage:
    """Mean and standard error of a correlated time series by block averaging.

    The series is cut into ``n_blocks`` consecutive blocks of equal length (the last
    ``len % n_blocks`` samples are dropped); the error is the standard error of the block means.

    Raises:
        ValueError: fewer than two blocks, or fewer samples than blocks.
    """
    values = np.asarray(series, dtype=float).ravel()
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be at least 2 for an error bar, got {n_blocks}")
    if values.size < n_blocks:
        raise ValueError(f"{values.size} samples cannot make {n_blocks} blocks; run longer or use fewer blocks")
    size = values.size // n_blocks
    means = values[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
    return BlockAverage(float(means.mean()), float(means.std(ddof=1) / np.sqrt(n_blocks)), n_blocks, size)


@dataclass(frozen=True)
class LineFit:
    """``y = intercept + slope * x`` with the standard errors and covariance of the two parameters."""

    slope: float
    intercept: float
    slope_error: float
    intercept_error: float
    covariance: float
    """cov(intercept, slope)."""

    def predict(self, x: float) -> tuple[float, float]:
        """``(y, error of y)`` at ``x``, the error propagated through the parameters' covariance."""
        y = self.intercept + self.slope * x
        var = self.intercept_error ** 2 + (x * self.slope_error) ** 2 + 2 * x * self.covariance
        return float(y), float(np.sqrt(max(var, 0.0)))


def line_fit(x, y, y_errors=None) -> LineFit:
    """Least-squares straight line through ``(x, y)`` (``numpy.polyfit``).

    With ``y_errors`` (one standard error per point, all positive) the fit is weighted by
    ``1 / y_errors`` and the parameter errors follow from those errors alone (``cov="unscaled"``);
    without them the points are weighted equally and the errors follow from the residuals (needs
    at least three points).

    Raises:
        ValueError: fewer than two points, non-positive errors, or two points without errors.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size < 2 or x.size != y.size:
        raise ValueError(f"a line needs at least two (x, y) points of equal count, got {x.size} and {y.size}")
    if y_errors is not None:
        err = np.asarray(y_errors, float)
        if err.shape != y.shape or not np.all(err > 0):
            raise ValueError("y_errors must hold one positive error per point")
        coef, cov = np.polyfit(x, y, 1, w=1.0 / err, cov="unscaled")
    else:
        if x.size < 3:
            raise ValueError("an unweighted line fit needs at least three points for its error; give y_errors")
        coef, cov = np.polyfit(x, y, 1, cov=True)
    return LineFit(float(coef[0]), float(coef[1]), float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1])),
                   float(cov[0, 1]))
