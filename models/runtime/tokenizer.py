"""A pure-Python tokenizer that reproduces keras TextVectorization exactly.

The phase-1 model runs in the LiteRT interpreter, which has no string ops
(StringLower, RegexReplace and StringSplit need Flex ops it does not ship), so
the vocabulary learned by `TextVectorization.adapt` is exported beside the
.tflite file and tokenization happens here, in Python, identically when the
model is trained and when it serves.

It mirrors TextVectorization(standardize='lower_and_strip_punctuation',
split='whitespace', output_mode='int', output_sequence_length=N):
- `tf.strings.lower` with no encoding lowercases ASCII bytes only, and
  `tf.strings.split` splits on ASCII whitespace only, so the work is done on
  UTF-8 bytes (`bytes.translate` + `bytes.split`), never with Unicode-aware
  `str.lower`/`str.split`, which would treat e.g. 'É' or a no-break space
  differently;
- the punctuation set is TextVectorization's regex class, all ASCII, so
  deleting those bytes never touches a multi-byte UTF-8 character;
- index 0 is padding (''), 1 the out-of-vocabulary token ('[UNK]'); sequences
  are truncated or zero-padded to `sequence_length`.
"""
import json

import numpy as np

# TextVectorization's strip regex: [!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']
# (',-\.' is the range ',', '-', '.').
PUNCTUATION = b'!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\''
_ASCII_LOWER = bytes.maketrans(b'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                               b'abcdefghijklmnopqrstuvwxyz')
PAD_ID = 0
OOV_ID = 1
OOV_TOKEN = '[UNK]'


class Tokenizer:
  """Text -> fixed-length int32 token ids, from a TextVectorization vocabulary."""

  def __init__(self, vocabulary, sequence_length):
    if len(vocabulary) < 2 or vocabulary[0] != '' or vocabulary[1] != OOV_TOKEN:
      raise ValueError(
          "vocabulary must start with '' (padding) and '[UNK]' (OOV), as "
          'TextVectorization.get_vocabulary() returns it')
    self.vocabulary = list(vocabulary)
    self.sequence_length = int(sequence_length)
    self._ids = {token.encode('utf-8'): i
                 for i, token in enumerate(self.vocabulary) if i > OOV_ID}

  @classmethod
  def from_vectorizer(cls, vectorizer):
    config = vectorizer.get_config()
    expected = {'standardize': 'lower_and_strip_punctuation',
                'split': 'whitespace', 'output_mode': 'int', 'ngrams': None}
    for name, value in expected.items():
      if config.get(name) != value:
        raise ValueError(f'TextVectorization {name}={config.get(name)!r} is '
                         f'not reproduced here (only {value!r})')
    if not config.get('output_sequence_length'):
      raise ValueError('TextVectorization needs output_sequence_length')
    return cls(vectorizer.get_vocabulary(), config['output_sequence_length'])

  @classmethod
  def load(cls, path):
    with open(path, encoding='utf-8') as f:
      spec = json.load(f)
    return cls(spec['vocabulary'], spec['sequence_length'])

  def save(self, path):
    # JSON, not one token per line: tokens may contain characters that
    # str.splitlines() treats as line breaks (e.g. U+2028, U+0085).
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'standardize': 'lower_and_strip_punctuation',
                 'split': 'whitespace',
                 'sequence_length': self.sequence_length,
                 'vocabulary': self.vocabulary}, f, ensure_ascii=False)

  def tokens(self, text):
    """The standardized tokens of one text, as UTF-8 bytes."""
    data = text.encode('utf-8') if isinstance(text, str) else bytes(text)
    return data.translate(_ASCII_LOWER, PUNCTUATION).split()

  def encode_one(self, text):
    ids = self._ids
    row = [ids.get(t, OOV_ID) for t in self.tokens(text)[:self.sequence_length]]
    return row + [PAD_ID] * (self.sequence_length - len(row))

  def encode(self, texts):
    """Returns an int32 array [len(texts), sequence_length] of token ids."""
    out = np.zeros((len(texts), self.sequence_length), dtype=np.int32)
    ids = self._ids
    length = self.sequence_length
    for i, text in enumerate(texts):
      row = [ids.get(t, OOV_ID) for t in self.tokens(text)[:length]]
      out[i, :len(row)] = row
    return out
