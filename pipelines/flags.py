"""Command-line flags declared as data, and the parsers built from them.

Each job declares its flags once, as a tuple of `Flag`s (shared sets, such as
the keyed-input or BigQuery-write flags, are declared here and reused), and
`parser()` builds the job's argparse parser from them. Everything that
describes a flag reads that parser: `--help`, the Flex Template metadata and
docs/options.md (templates.generate), and the job's pipeline options
(`options_class`), so they cannot drift apart.
"""
import argparse
import dataclasses

from apache_beam.options.pipeline_options import PipelineOptions


def boolean(text):
  """argparse type for on/off flags: 'true' or 'false' (any case)."""
  lowered = text.strip().lower()
  if lowered not in ('true', 'false'):
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')
  return lowered == 'true'


def split_list(text):
  """'a, b,,c' -> ['a', 'b', 'c']: how every comma-separated flag is read."""
  return [part.strip() for part in (text or '').split(',') if part.strip()]


@dataclasses.dataclass(frozen=True)
class Flag:
  """One flag, `--<name>`.

  switch: an on/off flag; `--x`, `--x=true` and `--x=false` all work (a Flex
    Template passes every parameter as --name=value, which argparse's
    store_true refuses).
  repeat: the flag may be given several times; its value is the list.
  template_type: the Flex Template paramType, where the name alone does not
    say what the flag holds (see templates.generate.param_type).
  group: the --help section it is listed under.
  """
  name: str
  help: str
  default: object = None
  type: object = None
  choices: tuple = None
  required: bool = False
  repeat: bool = False
  switch: bool = False
  template_type: str = None
  group: str = None

  def add_to(self, parser):
    kwargs = {'help': self.help, 'default': self.default}
    if self.switch:
      kwargs.update(type=boolean, nargs='?', const=True,
                    default=bool(self.default), metavar='true|false')
    elif self.repeat:
      kwargs['action'] = 'append'
    if self.type is not None:
      kwargs['type'] = self.type
    if self.choices is not None:
      kwargs['choices'] = self.choices
    if self.required:
      kwargs['required'] = True
    action = parser.add_argument(f'--{self.name}', **kwargs)
    action.template_type = self.template_type
    return action


def in_group(group, flag_list):
  """The same flags, listed under `group` in --help."""
  return tuple(dataclasses.replace(f, group=group) for f in flag_list)


def parser(prog, description, flag_list, raw=False):
  """The argparse parser of a job's flags (groups in first-use order);
  `raw` keeps the description's own line breaks (a module docstring with
  usage examples)."""
  out = argparse.ArgumentParser(
      prog=prog, description=description,
      formatter_class=(argparse.RawDescriptionHelpFormatter if raw
                       else argparse.HelpFormatter))
  groups = {}
  for flag in flag_list:
    target = out
    if flag.group:
      if flag.group not in groups:
        groups[flag.group] = out.add_argument_group(flag.group)
      target = groups[flag.group]
    flag.add_to(target)
  return out


def options_class(job, flag_list):
  """A PipelineOptions subclass that records the job's own flags among its
  pipeline options, so a Dataflow job page lists them beside Beam's.

  Recorded as text: the job validates its flags itself (`parser`); here they
  are only carried. Jobs share flag names (--input, --output): a name an
  earlier job's class declared is not declared again.
  """
  def _add_argparse_args(cls, parser_):
    known = set(parser_._option_string_actions)  # pylint: disable=protected-access
    for flag in flag_list:
      if f'--{flag.name}' not in known:
        parser_.add_argument(
            f'--{flag.name}', action='append' if flag.repeat else None,
            help=flag.help)
  return type(f'{job}Options', (PipelineOptions,),
              {'_add_argparse_args': classmethod(_add_argparse_args),
               'JOB_FLAGS': True,
               '__doc__': f'The flags of {job}, recorded as pipeline options.'})


def _beam_parser():
  """An argparse parser of Beam's own pipeline options (those of every
  PipelineOptions class imported so far, as Beam itself gathers them),
  without the jobs' flags that options_class records among them."""
  from apache_beam.options.pipeline_options import _BeamArgumentParser  # pylint: disable=import-outside-toplevel
  parser_ = _BeamArgumentParser(allow_abbrev=False)
  for cls in PipelineOptions.__subclasses__():
    if not getattr(cls, 'JOB_FLAGS', False):
      cls._add_argparse_args(parser_)  # pylint: disable=protected-access
  return parser_


def beam_option_names():
  """The names (dests) of Beam's own pipeline options."""
  return {action.dest for action in _beam_parser()._actions}  # pylint: disable=protected-access


def beam_flags():
  """Beam's own pipeline options as they are written: '--runner', ..."""
  return set(_beam_parser()._option_string_actions)  # pylint: disable=protected-access


def as_argv(args, flag_list):
  """The job's parsed flags back as --name=value words (those not at their
  default), for options_class to record."""
  out = []
  for flag in flag_list:
    value = getattr(args, flag.name, None)
    if value is None or value == flag.default or value == []:
      continue
    for item in value if flag.repeat else [value]:
      text = str(item).lower() if isinstance(item, bool) else str(item)
      out.append(f'--{flag.name}={text}')
  return out


def pipeline_options(beam_args, args, flag_list):
  """The job's PipelineOptions: Beam's flags and, recorded beside them (an
  `options_class` of the job must be defined), the job's own."""
  return PipelineOptions(list(beam_args) + as_argv(args, flag_list))
