"""Shared fixtures: small models built once per test session."""
import os

import pytest

from tests import fuzz
from tests import tiny_models

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
fuzz.load_profile()
# Fault tests too long for `make test`'s budget run under `make faults`.
RUN_FAULTS = 'RUN_FAULTS'


def pytest_configure(config):
  config.addinivalue_line(
      'markers', f'faults: a longer fault run; only with {RUN_FAULTS}=1 '
      '(make faults)')


def pytest_collection_modifyitems(config, items):
  del config
  if os.environ.get(RUN_FAULTS) == '1':
    return
  skip = pytest.mark.skip(reason=f'a longer fault run: {RUN_FAULTS}=1 or '
                          'make faults')
  for item in items:
    if item.get_closest_marker('faults'):
      item.add_marker(skip)


@pytest.fixture(scope='session')
def tiny_model_dir(tmp_path_factory):
  """A tiny sentiment SavedModel with the book's two signatures."""
  return tiny_models.train_tiny_sentiment(
      tmp_path_factory.mktemp('models') / 'tiny' / '1')


@pytest.fixture(scope='session')
def poison_model_dir(tmp_path_factory):
  return tiny_models.export_poison_model(
      tmp_path_factory.mktemp('models') / 'poison')


@pytest.fixture(scope='session')
def plain_model_dir(tmp_path_factory):
  return tiny_models.export_plain_model(
      tmp_path_factory.mktemp('models') / 'plain')


@pytest.fixture(scope='session')
def demo_model_dir():
  """The real demo model (built by `make model`; built here if absent)."""
  from models import train_demo
  return train_demo.build()
