"""What a Docker build context (.dockerignore) or a `gcloud builds submit`
upload (.gcloudignore) leaves out, read without docker or gcloud.

The project's ignore files use root-anchored patterns ('/x', or '**/x' at
any depth), which docker's rules and gitignore's syntax read alike; this
reads exactly that subset (tests/test_images.py checks the files keep to it).
"""
import fnmatch
import re

from templates import registry

ROOT = registry.REPO_ROOT


def patterns(name):
  """The ignore file's patterns, `#!include:` followed (gcloud's syntax)."""
  out = []
  for line in (ROOT / name).read_text().splitlines():
    if line.startswith('#!include:'):
      out += patterns(line[len('#!include:'):].strip())
    elif line.strip() and not line.startswith('#'):
      out.append(line.strip())
  return out


def regex(pattern):
  """A root-anchored pattern ('/x', or '**/x' at any depth), as docker and
  gitignore both read it, as a regex over context-relative paths."""
  parts = []
  for segment in pattern.lstrip('/').split('/'):
    parts.append('(?:[^/]+/)*' if segment == '**' else
                 fnmatch.translate(segment)[4:-3].replace('.*', '[^/]*') + '/')
  return re.compile(''.join(parts)[:-1])


def excluded(path, rules):
  """Whether `path` (or a folder above it) matches the last of `rules` that
  speaks of it (a `!` pattern re-includes)."""
  prefixes = ['/'.join(path.split('/')[:i + 1])
              for i in range(path.count('/') + 1)]
  out = False
  for rule in rules:
    if any(regex(rule.lstrip('!')).fullmatch(p) for p in prefixes):
      out = not rule.startswith('!')
  return out
