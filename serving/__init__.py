"""The online REST endpoint over the prediction library (Lambda architecture).

The same exported SavedModel and the same `models.runtime.predictor.Predictor` serve
online requests here (latency) and the Beam pipelines (throughput). Start it
with `python -m serving --model_dir DIR`; see docs/serving.md.
"""
