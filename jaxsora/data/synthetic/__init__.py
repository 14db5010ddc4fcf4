"""The synthetic world: procedurally rendered, captioned clips of coloured shapes, and the analytic inverse
that reads the same attributes back from pixels.

* :class:`SyntheticWorld` - the ``ClipSource`` (random access, deterministic by ``(seed, index)``);
* :func:`describe` / :func:`match` - pixels -> per-object attributes, and their agreement with ground truth or
  with the attributes of a prompt (for evaluating generated videos);
* :mod:`vocab` - the names and the numbers behind them.

Note: ``jaxsora.data.synthetic.describe`` is the function; the module of that name is reached with
``importlib.import_module("jaxsora.data.synthetic.describe")``.

Modules, one concept each: ``vocab`` (names and the numbers behind them), ``shapes`` (SDF geometry),
``scene`` (sampling what a clip shows), ``render`` (pixels at any size), ``meta`` (a window's ground truth),
``captions`` (text from ground truth), ``components`` (numpy morphology), ``measure`` (per-frame pixel
measurements), ``describe`` (the inverse), ``match`` (scoring it), ``source`` (the ``ClipSource``).
"""

from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.describe import ATTRIBUTES, ObjectDescription, describe
from jaxsora.data.synthetic.match import MatchResult, match
from jaxsora.data.synthetic.source import SyntheticWorld

__all__ = ["ATTRIBUTES", "MatchResult", "ObjectDescription", "SyntheticWorld", "describe", "match", "vocab"]
