"""The error a transform's configuration raises when it cannot work.

Transforms validate the settings they are given once, where their typed
config is built; `field` names the setting, so that a job can report the
flag it came from as one usage line (pipelines.launch.flag_names) instead
of checking the same thing a second time.
"""


class ConfigError(ValueError):

  def __init__(self, field, problem):
    super().__init__(f'{field}: {problem}')
    self.field = field
    self.problem = problem
