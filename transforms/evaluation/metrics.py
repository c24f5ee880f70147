"""Classification metrics as mergeable counts, and the slice combiners.

Everything a metric needs is a sum, so partial results from any bundle
merge exactly (Beam lifts the combine before the shuffle):
- a confusion matrix as counts {(true, predicted): n} gives accuracy,
  per-class precision/recall/F1/support, macro and weighted F1, with
  scikit-learn's definitions (labels = sorted union of true and predicted,
  0.0 where a denominator is 0);
- log loss is a sum of per-row losses (scores clipped like scikit-learn);
- ROC AUC comes from per-class counts of scores in logit bins of width
  1/BINS_PER_LOGIT; it is exact (ties counted half, as scikit-learn does)
  except that two scores in one bin tie;
- calibration: per bin of 10 equal-width probability bins (scikit-learn's
  calibration_curve bins: bin = bisect_left(inner edges, p)), the count,
  sum of scores and positives give the reliability diagram and the expected
  calibration error; the Brier score is a sum of squared errors.

Slicing happens inside the combiner: rows are counted per cell (UTC day,
trailing windows holding the row, key segments) and cells are rolled up into
slices once, at the end, so each row costs one update whatever the number
of slices.
"""
import bisect

import apache_beam as beam

from transforms.evaluation.rows import periods

ALL = 'all'
WINDOW = 'window'
CALIBRATION_BINS = 10
# numpy.linspace(0, 1, 11)[1:-1], bit for bit, as calibration_curve cuts.
CALIBRATION_EDGES = tuple(i * (1.0 / CALIBRATION_BINS)
                          for i in range(1, CALIBRATION_BINS))


def merge_keyed(accumulators, merge, copy):
  """Merges {key: partial} accumulators into the first, the only one a
  CombineFn may modify: `merge(mine, theirs)` where both have a key, else a
  `copy(theirs)`."""
  accumulators = iter(accumulators)
  merged = next(accumulators)
  for other in accumulators:
    for key, partial in other.items():
      if key in merged:
        merge(merged[key], partial)
      else:
        merged[key] = copy(partial)
  return merged


class SliceMetrics:
  """Mergeable counts for one slice (or one cell)."""
  __slots__ = ('count', 'labelled', 'confusion', 'pos_bins', 'neg_bins',
               'loss_sum', 'scored', 'brier_sum', 'calibration')

  def __init__(self):
    self.count = 0        # predictions
    self.labelled = 0     # predictions with ground truth
    self.confusion = {}   # (true, predicted) -> n
    self.pos_bins = {}    # score bin -> n, rows whose label is positive
    self.neg_bins = {}
    self.loss_sum = 0.0
    self.scored = 0       # labelled rows with AUC / log-loss terms
    self.brier_sum = 0.0  # of (score - is_pos)^2, rows given a score
    self.calibration = {}  # probability bin -> [rows, sum of scores, pos]

  def add(self, true, predicted, score_bin, loss, is_pos, score=None):
    self.count += 1
    if true is None:
      return
    self.labelled += 1
    cell = (true, predicted)
    confusion = self.confusion
    confusion[cell] = confusion.get(cell, 0) + 1
    if score_bin is not None:
      self.scored += 1
      self.loss_sum += loss
      bins = self.pos_bins if is_pos else self.neg_bins
      bins[score_bin] = bins.get(score_bin, 0) + 1
      if score is not None:
        self.brier_sum += (score - is_pos) ** 2
        b = bisect.bisect_left(CALIBRATION_EDGES, score)
        cell = self.calibration.get(b)
        if cell is None:
          cell = self.calibration[b] = [0, 0.0, 0]
        cell[0] += 1
        cell[1] += score
        cell[2] += is_pos

  def merge(self, other):
    self.count += other.count
    self.labelled += other.labelled
    self.loss_sum += other.loss_sum
    self.scored += other.scored
    self.brier_sum += other.brier_sum
    for b, (n, total, pos) in other.calibration.items():
      cell = self.calibration.setdefault(b, [0, 0.0, 0])
      cell[0] += n
      cell[1] += total
      cell[2] += pos
    for mine, theirs in ((self.confusion, other.confusion),
                         (self.pos_bins, other.pos_bins),
                         (self.neg_bins, other.neg_bins)):
      for k, v in theirs.items():
        mine[k] = mine.get(k, 0) + v
    return self

  def copy(self):
    return SliceMetrics().merge(self)

  def __getstate__(self):
    return tuple(getattr(self, s) for s in self.__slots__)

  def __setstate__(self, state):
    for name, value in zip(self.__slots__, state):
      setattr(self, name, value)

  def roc_auc(self):
    """Area under the ROC curve, or None with only one class present."""
    n_pos = sum(self.pos_bins.values())
    n_neg = sum(self.neg_bins.values())
    if not n_pos or not n_neg:
      return None
    area = 0.0
    neg_below = 0
    for b in sorted(set(self.pos_bins) | set(self.neg_bins)):
      pos, neg = self.pos_bins.get(b, 0), self.neg_bins.get(b, 0)
      area += pos * (neg_below + 0.5 * neg)
      neg_below += neg
    return area / (n_pos * n_neg)

  def calibration_metrics(self):
    """(Brier score, ECE, reliability bins) over the rows given a score,
    or (None, None, None) without any."""
    n = sum(cell[0] for cell in self.calibration.values())
    if not n:
      return None, None, None
    bins = []
    ece = 0.0
    for b in range(CALIBRATION_BINS):
      rows, total, pos = self.calibration.get(b, (0, 0.0, 0))
      bins.append({
          'bin': b, 'lower': b / CALIBRATION_BINS,
          'upper': (b + 1) / CALIBRATION_BINS, 'count': rows,
          'mean_predicted': total / rows if rows else None,
          'fraction_positive': pos / rows if rows else None})
      ece += abs(pos - total) / n
    return self.brier_sum / n, ece, bins

  def metrics(self):
    """The slice's metrics as a JSON-ready dict (None where undefined)."""
    out = {
        'count': self.count,
        'labelled': self.labelled,
        'label_coverage': self.labelled / self.count if self.count else None,
    }
    labels = sorted({l for cell in self.confusion for l in cell})
    index = {l: i for i, l in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for (t, p), n in self.confusion.items():
      matrix[index[t]][index[p]] += n
    per_class = []
    for i, label in enumerate(labels):
      tp = matrix[i][i]
      support = sum(matrix[i])
      predicted = sum(row[i] for row in matrix)
      per_class.append({
          'label': label,
          'precision': tp / predicted if predicted else 0.0,
          'recall': tp / support if support else 0.0,
          'f1': 2 * tp / (support + predicted) if support + predicted else 0.0,
          'support': support,
      })
    n = self.labelled
    mean = lambda name: (
        sum(c[name] for c in per_class) / len(per_class) if per_class else None)
    out.update({
        'accuracy': sum(matrix[i][i] for i in range(len(labels))) / n
                    if n else None,
        'macro_precision': mean('precision'),
        'macro_recall': mean('recall'),
        'macro_f1': mean('f1'),
        'weighted_f1': sum(c['f1'] * c['support'] for c in per_class) / n
                       if n else None,
        'per_class': per_class,
        'confusion_matrix': {'labels': labels, 'matrix': matrix},
    })
    binary = n and self.scored == n
    out['roc_auc'] = self.roc_auc() if binary else None
    out['log_loss'] = self.loss_sum / n if binary else None
    calibrated = binary and sum(c[0] for c in self.calibration.values()) == n
    brier, ece, bins = (self.calibration_metrics() if calibrated
                        else (None, None, None))
    out.update({'brier_score': brier, 'ece': ece, 'calibration': bins})
    return out


class Slicer:
  """Which slices a row belongs to.

  A cell is (day, windows holding the row, segments); `slices(cell)` lists
  its slice keys (time_slice, period, segment_name, segment_value): every
  requested calendar period and window, each without a segment and once per
  key segment.
  """

  def __init__(self, config):
    self._time_slices = tuple(config.time_slices)
    self._windows = config.window_bounds()

  def cell(self, epoch, day, segments):
    return (day, tuple(name for name, start, end in self._windows
                       if start < epoch <= end), segments)

  def window_names(self):
    return [name for name, _, _ in self._windows]

  def slices(self, cell):
    day, windows, segments = cell
    calendar = periods(day)
    times = [(t, ALL if t == ALL else calendar[t]) for t in self._time_slices]
    times += [(WINDOW, w) for w in windows]
    keys = [(t, period, None, None) for t, period in times]
    for name, value in segments:
      keys += [(t, period, name, value) for t, period in times]
    return keys


class SliceMetricsFn(beam.CombineFn):
  """Scored rows of one (model, version) -> [(slice key, SliceMetrics)].

  Every requested window is reported even when empty, so "no predictions
  in the last 7 days" is visible (and can alert) rather than absent.
  """

  def __init__(self, config):
    self._slicer = Slicer(config)

  def create_accumulator(self):
    return {}

  def add_input(self, accumulator, row):
    epoch, day, segments = row[:3]
    cell = self._slicer.cell(epoch, day, segments)
    counts = accumulator.get(cell)
    if counts is None:
      counts = accumulator[cell] = SliceMetrics()
    counts.add(*row[3:])
    return accumulator

  def merge_accumulators(self, accumulators):
    return merge_keyed(accumulators, SliceMetrics.merge, SliceMetrics.copy)

  def extract_output(self, accumulator):
    slicer = self._slicer
    slices = {(WINDOW, w, None, None): SliceMetrics()
              for w in slicer.window_names()}
    for cell, counts in accumulator.items():
      for key in slicer.slices(cell):
        if key in slices:
          slices[key].merge(counts)
        else:
          slices[key] = counts.copy()
    return sorted(slices.items(), key=lambda kv: tuple(
        '' if part is None else part for part in kv[0]))


class PairMetricsFn(beam.CombineFn):
  """(row_a, row_b) of keys two versions both scored -> (metrics a, b)."""

  def create_accumulator(self):
    return SliceMetrics(), SliceMetrics()

  def add_input(self, accumulator, rows):
    for counts, row in zip(accumulator, rows):
      counts.add(*row[3:])
    return accumulator

  def merge_accumulators(self, accumulators):
    accumulators = iter(accumulators)
    a, b = next(accumulators)
    for other_a, other_b in accumulators:
      a.merge(other_a)
      b.merge(other_b)
    return a, b

  def extract_output(self, accumulator):
    return tuple(counts.metrics() for counts in accumulator)
