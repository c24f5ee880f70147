"""Reads a text model's vocabulary out of its SavedModel, without loading it.

A keras TextVectorization exported inside the serving function (the demo
model, models/export/saved_model.py) keeps its vocabulary as a string
constant of the graph, the initializer of its lookup table: the variables
hold an empty table. So the vocabulary is read from saved_model.pb as
saved_model_cli would, as the largest string constant of the graph and its
functions, when that has at least MIN_WORDS entries. Anything else (no such
constant, a model without text preprocessing, a hub handle) gives None, and
the caller falls back (models/baseline_stats.py: the baseline's own most
frequent tokens).
"""
MIN_WORDS = 20


def read_vocabulary(model_dir):
  """The vocabulary (a list of str, as TextVectorization ranks it, without
  padding and OOV entries), or None when none can be read."""
  from tensorflow.core.protobuf import saved_model_pb2
  from tensorflow.python.lib.io import file_io
  path = f'{model_dir.rstrip("/")}/saved_model.pb'
  if not file_io.file_exists(path):
    return None
  model = saved_model_pb2.SavedModel()
  model.ParseFromString(file_io.read_file_to_string(path, binary_mode=True))
  best = []
  for graph in model.meta_graphs:
    nodes = list(graph.graph_def.node) + [
        n for f in graph.graph_def.library.function for n in f.node_def]
    for node in nodes:
      if node.op == 'Const' and node.attr['dtype'].type == 7:  # DT_STRING
        values = node.attr['value'].tensor.string_val
        if len(values) > len(best):
          best = values
  if len(best) < MIN_WORDS:
    return None
  return [w.decode('utf-8', 'replace') for w in best
          if w not in (b'', b'[UNK]')]
