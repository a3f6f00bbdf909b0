"""l2compile: a declarative model-spec compiler for Keras.

spec file -> spec (validated) -> plan (resolved) -> render (Python source) -> build.
"""

__version__ = "0.1.0"
