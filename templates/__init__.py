"""Flex Templates, their generated metadata and their scheduled launches.

`registry` lists the pipelines that ship as templates; `generate` derives each
template's metadata.json, the README options tables and the Cloud Build config
from the pipelines' own `build_parser()`; `schedule` renders Cloud Scheduler
launches; `dataflow_api` checks all of it against the Dataflow v1b3 API schema.
"""
