"""Installs resilient-serving; also usable as Dataflow's --setup_file.

Dataflow workers run `pip install .` with this file, so the runtime requirements
are read from requirements.txt (the single source of pins) and the packages are
found automatically.
"""
import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _requirements():
  lines = (HERE / 'requirements.txt').read_text().splitlines()
  return [l.strip() for l in lines if l.strip() and not l.startswith('#')]


setuptools.setup(
    name='resilient-serving',
    version='0.1.0',
    description=(
        'Apache Beam pipelines that serve ML models resiliently: keyed batch '
        'predictions, streaming moderation, continuous evaluation, two-phase '
        'predictions.'),
    python_requires='>=3.10',
    # templates/ ships too (tens of KB, never imported by workers) with its
    # metadata.json files, so `python -m templates.schedule` can check launch
    # configs from any install of the project (the template image included),
    # not only from a checkout. (`templates.generate` writes into a checkout.)
    packages=setuptools.find_packages(
        include=['common*', 'pipelines*', 'transforms*', 'models*', 'serving*',
                 'templates*']),
    # transforms/moderation/knowledge/ (the alias table, the common-word
    # list) is read on workers with importlib.resources: it must ship.
    package_data={'': ['*.json', '*.tsv', '*.csv'],
                  'templates': ['*/metadata.json', 'schedules/*.json'],
                  'transforms.moderation': ['knowledge/*.tsv',
                                            'knowledge/*.txt']},
    install_requires=_requirements(),
    # The online endpoint as a command; the Beam jobs stay `python -m
    # pipelines.NAME` (the form Dataflow and Flex Templates launch).
    entry_points={'console_scripts': ['resilient-serving=serving.__main__:main']},
)
