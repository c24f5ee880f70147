"""Streaming serving: Pub/Sub messages -> keyed, validated, deduplicated
records -> a gated model -> the batch job's records."""
