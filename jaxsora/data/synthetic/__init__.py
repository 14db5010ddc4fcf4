"""The synthetic world: procedurally rendered, captioned clips of coloured shapes, and the analytic inverse
that reads the same attributes back from pixels.

* :class:`SyntheticWorld` - the ``ClipSource`` (random access, deterministic by ``(seed, index)``);
* :func:`describe` / :func:`match` - pixels -> per-object attributes, and their agreement with ground truth or
  with the attributes of a prompt (for evaluating generated videos);
* :mod:`vocab` - the names and the numbers behind them.

Modules, one concept each: ``vocab`` (names), ``shapes`` (SDF geometry), ``scene`` (sampling what a clip
shows), ``render`` (pixels at any size), ``meta`` (window ground truth), ``captions`` (text from ground
truth), ``describe`` (the inverse), ``source`` (the ``ClipSource``).
"""

from jaxsora.data.synthetic.describe import ATTRIBUTES, ObjectDescription, describe
from jaxsora.data.synthetic.match import MatchResult, match
from jaxsora.data.synthetic.source import SyntheticWorld

__all__ = ["ATTRIBUTES", "MatchResult", "ObjectDescription", "SyntheticWorld", "describe", "match"]
