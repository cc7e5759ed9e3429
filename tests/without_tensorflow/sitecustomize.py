"""Imported at start-up by any Python whose PYTHONPATH has this folder first: the GPU machine's
environment, where TensorFlow, TFDS, tensorboardX and ml_collections are not installed. A None in
sys.modules makes `import tensorflow` raise ImportError and `importlib.util.find_spec("tensorflow")`
answer None, as if absent."""

import sys

ABSENT = ("tensorflow", "tensorflow_datasets", "tensorboardX", "ml_collections")
for name in ABSENT:
    sys.modules[name] = None
