"""Input pipeline: text sources, span corruption, vocabularies.

Names are imported on first use, so that `import keras_spactor` (and
`SpacTorT5` on JAX, fed by your own arrays) works where TensorFlow is not
installed; the pipeline itself is `tf.data` and needs it.
"""

import importlib
import sys
import types

_NAMES = {
    "builtin_corpus_documents": "builtin_corpus",
    "pretraining_dataset": "pretraining_dataset",
    "span_corruption_examples": "pretraining_dataset",
    "model_batch_arrays": "model_arrays",
    "ResumableBatches": "resumable_batches",
    "DocumentStats": "sources",
    "iter_documents": "sources",
    "text_dataset": "sources",
    "random_spans_noise_mask": "span_corruption",
    "span_corruption": "span_corruption",
    "span_corruption_lengths": "span_lengths",
    "default_vocabulary": "vocabulary",
    "load_vocabulary": "vocabulary",
    "mask_token_id": "vocabulary",
    "train_vocabulary": "vocabulary",
    "validate_sentinels": "vocabulary",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(
            f"module 'keras_spactor.data' has no attribute {name!r}"
        )
    module = importlib.import_module(f"keras_spactor.data.{_NAMES[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))


# Two modules share their name with their main function. Importing a
# submodule binds it on this package, whenever and by whomever it is first
# imported, and the function must win, as it did when this package imported
# everything up front.
_FUNCTIONS_NAMED_LIKE_THEIR_MODULE = ("pretraining_dataset", "span_corruption")


class _FunctionsOverModules(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _FUNCTIONS_NAMED_LIKE_THEIR_MODULE and isinstance(
            value, types.ModuleType
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _FunctionsOverModules
