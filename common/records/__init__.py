"""Every record the jobs write, each declared once (common.schema.Shape) with
the function that builds it: what a file, a topic or a table of it holds."""
