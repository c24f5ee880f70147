"""The online REST endpoint over the prediction library (Lambda architecture).

The same exported SavedModel and the same `models.runtime.predictor.Predictor`
serve online requests here (latency) and the Beam pipelines (throughput),
over TF Serving's REST API (v1, Vertex AI's predict protocol) and the Open
Inference Protocol (KServe v2). Start it with `python -m serving --model_dir
DIR`, or as the Vertex AI container of serving/Dockerfile; see
docs/serving.md.
"""
