"""Distances between two histograms over the same bins: PSI, Jensen-Shannon
distance and the two-sample Kolmogorov-Smirnov statistic.

Pure functions of bin counts, so the evaluation job (whose histograms are
merged by a CombineFn) and any check outside it compute the same figures.

- PSI (population stability index): sum over bins of (a - b) * ln(a / b) on
  the bins' shares, each share floored at PSI_FLOOR so an empty bin on one
  side gives a large but finite term (the usual convention).
- Jensen-Shannon distance: the square root of the JS divergence in base 2,
  so it lies in [0, 1]; scipy.spatial.distance.jensenshannon(a, b, base=2).
- KS: the largest gap between the two cumulative shares at bin edges. On
  binned data this is exactly scipy.stats.ks_2samp's statistic on the
  samples' bin indices; against the raw values it is a lower bound (the gap
  inside a bin is not seen), and it is only defined for ordered bins
  (numeric statistics, not categories).
"""
import math

PSI_FLOOR = 1e-4
MEASURES = ('psi', 'js', 'ks')


def _shares(counts):
  total = sum(counts)
  return [c / total for c in counts]


def psi(reference, current):
  """Population stability index of `current` against `reference` counts."""
  return sum(
      (a - b) * math.log(a / b) for a, b in zip(
          (max(s, PSI_FLOOR) for s in _shares(current)),
          (max(s, PSI_FLOOR) for s in _shares(reference))))


def js_distance(reference, current):
  """Jensen-Shannon distance (base 2) between the two distributions."""
  divergence = 0.0
  for p, q in zip(_shares(reference), _shares(current)):
    m = (p + q) / 2
    if p:
      divergence += p * math.log2(p / m) / 2
    if q:
      divergence += q * math.log2(q / m) / 2
  return math.sqrt(max(divergence, 0.0))


def ks_statistic(reference, current):
  """Largest gap between the cumulative shares of ordered bins."""
  gap = cdf_a = cdf_b = 0.0
  for a, b in zip(_shares(reference), _shares(current)):
    cdf_a += a
    cdf_b += b
    gap = max(gap, abs(cdf_a - cdf_b))
  return gap


def measure(name, reference, current):
  """One of MEASURES; both count lists non-empty and of equal length."""
  return {'psi': psi, 'js': js_distance, 'ks': ks_statistic}[name](
      reference, current)
