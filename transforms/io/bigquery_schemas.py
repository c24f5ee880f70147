"""BigQuery table schemas of every record the pipelines write, defined once.

Schemas are plain dicts in the shape of the BigQuery REST API's TableSchema
(`{"fields": [{"name", "type", "mode", "fields"?}]}`), which WriteToBigQuery
accepts directly and any user can paste into `bq mk --schema`. Each schema
comes with the column its table is partitioned on by day: the event or
processing time users filter by ("yesterday's predictions"), so their queries
scan one partition instead of the whole history.

Values that have no fixed shape (a dead letter's `raw` input, passthrough
fields) are stored as JSON text in STRING columns: they stay readable with
JSON_VALUE/PARSE_JSON and never make a row fail to load.
"""
import json

from transforms.inference.predictions import _value_rank

_BQ_TYPES = {'string': 'STRING', 'bool': 'BOOLEAN', 'float16': 'FLOAT',
             'float32': 'FLOAT', 'float64': 'FLOAT', 'int8': 'INTEGER',
             'int16': 'INTEGER', 'int32': 'INTEGER', 'int64': 'INTEGER',
             'uint8': 'INTEGER', 'uint16': 'INTEGER', 'uint32': 'INTEGER'}


def field(name, field_type, mode='NULLABLE', fields=None, description=None):
  out = {'name': name, 'type': field_type, 'mode': mode}
  if fields is not None:
    out['fields'] = fields
  if description:
    out['description'] = description
  return out


def time_partitioning(column):
  """The `timePartitioning` table option: daily partitions on `column`."""
  return {'type': 'DAY', 'field': column}


# Keyed predictions (transforms.inference.predictions), partitioned on predicted_at.
PREDICTIONS_PARTITION = 'predicted_at'


def predictions_schema(output_specs, passthrough_fields=()):
  """The table schema of prediction records for a signature's outputs.

  Scalars map to their BigQuery type and vectors to REPEATED columns; outputs
  of higher rank (which BigQuery arrays cannot nest) are JSON text.
  """
  outputs = []
  for name, spec in output_specs.items():
    rank = _value_rank(spec)
    base = _BQ_TYPES.get(spec.dtype, 'FLOAT')
    if rank == 0:
      outputs.append(field(name, base))
    elif rank == 1:
      outputs.append(field(name, base, 'REPEATED'))
    else:
      outputs.append(field(name, 'STRING', description='JSON array'))
  return {'fields': [
      field('key', 'STRING', 'REQUIRED'),
      field('model_version', 'STRING', 'REQUIRED'),
      field('predictions', 'RECORD', 'REQUIRED', outputs),
      field(PREDICTIONS_PARTITION, 'TIMESTAMP', 'REQUIRED'),
  ] + [field(f, 'STRING', description='JSON text unless a string')
       for f in passthrough_fields]}


# Dead letters (transforms.dead_letter), partitioned on the time they were
# written: they carry no other time of their own.
DEAD_LETTERS_PARTITION = 'dead_lettered_at'
DEAD_LETTERS_SCHEMA = {'fields': [
    field('key', 'STRING'),
    field('stage', 'STRING', 'REQUIRED'),
    field('reason', 'STRING', 'REQUIRED'),
    field('raw', 'STRING', description='the complete original input, JSON'),
    field('error', 'STRING'),
    field(DEAD_LETTERS_PARTITION, 'TIMESTAMP', 'REQUIRED'),
]}


# Moderation decisions (transforms.moderation.rule.decide), partitioned on the
# comment's event time.
DECISIONS_PARTITION = 'timestamp'
DECISIONS_SCHEMA = {'fields': [
    field('comment_id', 'STRING', 'REQUIRED'),
    field('commenter_id', 'STRING', 'REQUIRED'),
    field(DECISIONS_PARTITION, 'TIMESTAMP', 'REQUIRED',
          description='event time of the comment'),
    field('decision', 'STRING', 'REQUIRED', description='allow or reject'),
    field('entities', 'RECORD', 'REPEATED', [
        field('name', 'STRING'), field('canonical_id', 'STRING'),
        field('type', 'STRING')]),
    field('blocked_by', 'STRING', 'REPEATED'),
    field('reason', 'STRING'),
]}


# The book's continuous-evaluation table (common.prediction_log_row): one row
# per served prediction, ground truth filled in later; partitioned on the
# prediction time. The JSON shapes are stored as JSON text, as in the book.
PREDICTION_LOG_PARTITION = 'time'
PREDICTION_LOG_SCHEMA = {'fields': [
    field('key', 'STRING', 'REQUIRED'),
    field('model', 'STRING', 'REQUIRED'),
    field('model_version', 'STRING', 'REQUIRED'),
    field(PREDICTION_LOG_PARTITION, 'TIMESTAMP', 'REQUIRED'),
    field('raw_data', 'STRING', description='JSON {"instances": [...]}'),
    field('raw_prediction', 'STRING',
          description='JSON {"predictions": [...]}'),
    field('groundtruth', 'STRING',
          description='JSON {"predictions": [...]}, filled in later'),
]}


# Evaluation metrics, one row per (model, version, slice) of a run
# (transforms.evaluation.evaluate.slice_records), partitioned on the run's as_of.
METRICS_PARTITION = 'as_of'
METRICS_SCHEMA = {'fields': [
    field('model', 'STRING', 'REQUIRED'),
    field('model_version', 'STRING', 'REQUIRED'),
    field('slice', 'STRING', 'REQUIRED'),
    field('time_slice', 'STRING', 'REQUIRED'),
    field('period', 'STRING'),
    field('segment_name', 'STRING'),
    field('segment_value', 'STRING'),
    field('window_start', 'TIMESTAMP'),
    field('window_end', 'TIMESTAMP'),
    field('count', 'INTEGER'),
    field('labelled', 'INTEGER'),
    field('label_coverage', 'FLOAT'),
    field('accuracy', 'FLOAT'),
    field('macro_precision', 'FLOAT'),
    field('macro_recall', 'FLOAT'),
    field('macro_f1', 'FLOAT'),
    field('weighted_f1', 'FLOAT'),
    field('per_class', 'RECORD', 'REPEATED', [
        field('label', 'STRING'), field('precision', 'FLOAT'),
        field('recall', 'FLOAT'), field('f1', 'FLOAT'),
        field('support', 'INTEGER')]),
    field('confusion_matrix', 'STRING',
          description='JSON {"labels": [...], "matrix": [[...]]}'),
    field('roc_auc', 'FLOAT'),
    field('log_loss', 'FLOAT'),
    field(METRICS_PARTITION, 'TIMESTAMP', 'REQUIRED',
          description='the end of the evaluation run\'s trailing windows'),
]}


def metrics_row(slice_record, as_of):
  """A slice record as a metrics-table row (the confusion matrix, nested
  arrays BigQuery cannot hold, as JSON text)."""
  row = {f['name']: slice_record.get(f['name'])
         for f in METRICS_SCHEMA['fields']}
  row['confusion_matrix'] = json.dumps(slice_record.get('confusion_matrix'))
  if row['segment_value'] is not None:
    row['segment_value'] = str(row['segment_value'])
  row[METRICS_PARTITION] = as_of
  return row
