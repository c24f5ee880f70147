"""Writes demo comments (JSON lines) for the moderation pipeline.

  python -m harness.comments_demo --out data/comments.jsonl -n 500

Comments by a few dozen commenters over three days, mentioning well-known
people in the forms people write them ("Obama", "President Obama", "Barack
H. Obama"), with a few malformed lines so the dead letter has something to
show. Deterministic for a given --seed. Tests use `make_comments` directly.
"""
import argparse
import datetime
import json
import random

PEOPLE = [
    ['Obama', 'President Obama', 'Barack Obama', 'Barack H. Obama'],
    ['Merkel', 'Angela Merkel', 'Chancellor Merkel'],
    ['Trump', 'Donald Trump', 'Donald J. Trump'],
    ['Taylor Swift', 'Swift'],
    ['Elon Musk', 'Musk'],
    ['Serena Williams', 'Serena'],
    ['Greta Thunberg', 'Greta'],
    ['Jane Doe'],  # no table entry: linked by a normalised fallback id
]
TEMPLATES = [
    'I can\'t believe what {a} said yesterday.',
    'Has {a} been to Paris?',
    'Honestly {a} is overrated.',
    'Did anyone else watch {a} on TV last night?',
    '{a} and {b} should debate each other.',
    'My neighbour looks exactly like {a}.',
    'Great article, thanks for writing it.',
    'First!',
]
MALFORMED = [
    '{"comment_id": "bad-1", "commenter_id": "u1", "text": "no timestamp"}',
    '{"comment_id": "bad-2", "commenter_id": "u1", "text": "x", '
    '"timestamp": "yesterday"}',
    '{"comment_id": "bad-3", "commenter_id": "u1", "text": "   ", '
    '"timestamp": 1714521600}',
    'this is not json',
]


def make_comments(n, seed=0, commenters=40, days=3,
                  start='2024-05-01T00:00:00+00:00'):
  """n comment dicts; timestamps alternate ISO-8601 offsets and epoch s."""
  rng = random.Random(seed)
  t0 = datetime.datetime.fromisoformat(start)
  out = []
  for i in range(n):
    a, b = rng.sample(PEOPLE, 2)
    text = rng.choice(TEMPLATES).format(a=rng.choice(a), b=rng.choice(b))
    when = t0 + datetime.timedelta(seconds=rng.randrange(days * 86400))
    if i % 2:
      timestamp = when.astimezone(
          datetime.timezone(datetime.timedelta(hours=2))).isoformat()
    else:
      timestamp = int(when.timestamp())
    out.append({'comment_id': f'c{i:06d}',
                'commenter_id': f'user{rng.randrange(commenters)}',
                'text': text, 'timestamp': timestamp})
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='JSON-lines file to write')
  parser.add_argument('-n', type=int, default=500, help='number of comments')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--no_malformed', action='store_true',
                      help='leave out the malformed demo lines')
  args = parser.parse_args(argv)
  lines = [json.dumps(c) for c in make_comments(args.n, args.seed)]
  if not args.no_malformed:
    lines += MALFORMED
  with open(args.out, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  print(f'wrote {len(lines)} lines to {args.out}')


if __name__ == '__main__':
  main()
