"""Dataflow's --setup_file: every setting is in pyproject.toml.

Beam builds the package workers install with `python setup.py sdist` (or
`python -m build --sdist` when `build` is installed), so this file stays,
and stays empty.
"""
import setuptools

setuptools.setup()
