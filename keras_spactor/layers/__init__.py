from keras_spactor.layers.fused_attention import use_fused_attention
from keras_spactor.layers.generator_masked_lm_head import GeneratorMaskedLMHead
from keras_spactor.layers.position_bias import use_one_hot_position_bias
from keras_spactor.layers.replaced_token_detection_head import (
    ReplacedTokenDetectionHead,
)
from keras_spactor.layers.spactor_generator import SpacTorGenerator

__all__ = [
    "GeneratorMaskedLMHead",
    "ReplacedTokenDetectionHead",
    "SpacTorGenerator",
    "use_fused_attention",
    "use_one_hot_position_bias",
]
