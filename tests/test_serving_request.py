"""Request checks that need no model: shapes per instance and client keys."""
import pytest

from models.runtime.signatures import Signature
from models.runtime.signatures import TensorSpec
from serving.errors import ApiError
from serving.request import check_shapes
from serving.request import split_keys
from serving.request import with_keys

VECTORS = Signature('vectors', inputs={
    'x': TensorSpec('float32', (-1, 3)), 'tokens': TensorSpec('int64', (-1, -1)),
    'anything': TensorSpec('float32', ())}, outputs={})
KEYED = Signature('keyed', inputs={'key': TensorSpec('string', (-1,)),
                                   'text': TensorSpec('string', (-1,))},
                  outputs={})
PLAIN = Signature('plain', inputs={'text': TensorSpec('string', (-1,))},
                  outputs={})


def test_fixed_and_free_dimensions():
  check_shapes([{'x': [1, 2, 3], 'tokens': [4, 5], 'anything': [[1]]},
                {'x': [0, 0, 0], 'tokens': [], 'anything': 2}], VECTORS)


@pytest.mark.parametrize('instance, message', [
    ({'x': [1, 2]}, "input 'x' takes shape [3] per instance, got shape [2]"),
    ({'x': 1.0}, "input 'x' takes shape [3] per instance, got a scalar"),
    ({'tokens': [[1]]},
     "input 'tokens' takes shape [None] per instance, got shape [1, 1]"),
])
def test_wrong_shapes_name_the_input_and_instance(instance, message):
  with pytest.raises(ApiError) as error:
    check_shapes([{'x': [1, 2, 3]}, instance], VECTORS)
  assert error.value.status == 400
  assert error.value.message == f'instance 1: {message}'


def test_keys_are_stripped_only_for_signatures_without_a_key_input():
  instances = [{'key': 'a', 'text': 't1'}, 't2', {'key': 7, 'text': 't3'}]
  assert split_keys(instances, PLAIN) == (
      [{'text': 't1'}, 't2', {'text': 't3'}], ['a', None, 7])
  assert split_keys(instances, KEYED) == (instances, ['a', None, 7])
  assert instances[0] == {'key': 'a', 'text': 't1'}  # the client's, untouched


def test_keys_go_back_first_replacing_the_model_echo():
  predictions = [{'p': 1}, {'p': 2}, {'p': 3, 'key': '7'}]
  assert [list(p.items()) for p in with_keys(predictions, ['a', None, 7])] == [
      [('key', 'a'), ('p', 1)], [('p', 2)], [('key', 7), ('p', 3)]]
