"""Input pipeline: text sources, span corruption, vocabularies."""

from keras_spactor.data.builtin_corpus import (
    builtin_corpus_documents as builtin_corpus_documents,
)
from keras_spactor.data.pretraining_dataset import (
    pretraining_dataset as pretraining_dataset,
)
from keras_spactor.data.pretraining_dataset import (
    span_corruption_examples as span_corruption_examples,
)
from keras_spactor.data.sources import DocumentStats as DocumentStats
from keras_spactor.data.sources import iter_documents as iter_documents
from keras_spactor.data.sources import text_dataset as text_dataset
from keras_spactor.data.span_corruption import (
    random_spans_noise_mask as random_spans_noise_mask,
)
from keras_spactor.data.span_corruption import (
    span_corruption as span_corruption,
)
from keras_spactor.data.span_corruption import (
    span_corruption_lengths as span_corruption_lengths,
)
from keras_spactor.data.vocabulary import (
    default_vocabulary as default_vocabulary,
)
from keras_spactor.data.vocabulary import mask_token_id as mask_token_id
from keras_spactor.data.vocabulary import train_vocabulary as train_vocabulary
from keras_spactor.data.vocabulary import (
    validate_sentinels as validate_sentinels,
)
