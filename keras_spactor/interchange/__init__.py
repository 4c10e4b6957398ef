"""T5 interchange with Hugging Face transformers, both ways, exactly.

`export_to_transformers` writes a directory `T5ForConditionalGeneration`
and `AutoTokenizer` load; `load_transformers_checkpoint` builds keras-hub's
`T5Backbone` and `T5Tokenizer` from a transformers T5 checkpoint (also what
`SpacTorT5.from_preset("hf://...")` does). Neither imports transformers or
PyTorch.
"""

from keras_spactor.interchange.activations import gelu_approximate
from keras_spactor.interchange.transformers_export import export_to_transformers
from keras_spactor.interchange.transformers_import import (
    load_transformers_checkpoint,
)
from keras_spactor.interchange.transformers_import import (
    transformers_checkpoint_directory,
)

__all__ = [
    "export_to_transformers",
    "gelu_approximate",
    "load_transformers_checkpoint",
    "transformers_checkpoint_directory",
]
