"""Checks of a `SpacTorT5`'s settings, so a bad one fails at construction."""


def check_config(model):
    """Raise a clear `ValueError` for settings that cannot work.

    Args:
        model: a `SpacTorT5` whose settings are set (backbone included).
    """
    rows = model.backbone.vocabulary_size
    if model.vocabulary_size > rows:
        raise ValueError(
            f"The tokenizer vocabulary ({model.vocabulary_size} pieces) is "
            f"larger than the model's embedding ({rows} rows)."
        )
    if not 0 < model.num_sentinels < model.vocabulary_size:
        raise ValueError(
            f"num_sentinels={model.num_sentinels} must be in "
            f"(0, {model.vocabulary_size})."
        )
    _check_mask_token_id(model, rows)
    if not 0.0 < model.mlm_probability < 1.0:
        raise ValueError(
            f"mlm_probability={model.mlm_probability} must be in (0, 1)."
        )
    if not 0.0 < model.mask_replacement_rate <= 1.0:
        raise ValueError(
            f"mask_replacement_rate={model.mask_replacement_rate} must be "
            "in (0, 1]."
        )
    if model.rtd_positions not in ("eligible", "all"):
        raise ValueError(
            f"rtd_positions={model.rtd_positions!r} must be 'eligible' "
            "or 'all'."
        )
    if model.sampling_temperature <= 0:
        raise ValueError("sampling_temperature must be positive.")
    preprocessor = model.preprocessor
    # A model that Keras restores loads the vocabulary after this.
    if preprocessor is not None and preprocessor.has_vocabulary:
        check_tokenizer(model, model.tokenizer)
        check_preprocessor_ids(model, preprocessor)


def _check_mask_token_id(model, rows):
    first_sentinel = model.vocabulary_size - model.num_sentinels
    mask = model.mask_token_id
    if not 0 <= mask < rows:
        raise ValueError(
            f"mask_token_id={mask} is outside the model's embedding "
            f"(0..{rows - 1}). With a vocabulary that fills the "
            "embedding, give the id of a dedicated '<mask>' piece."
        )
    if mask in (model.pad_token_id, model.eos_token_id):
        raise ValueError(
            f"mask_token_id={mask} collides with the pad or EOS token."
        )
    if first_sentinel <= mask < model.vocabulary_size:
        raise ValueError(
            f"mask_token_id={mask} collides with a sentinel (sentinels "
            f"are {first_sentinel}..{model.vocabulary_size - 1})."
        )


def check_tokenizer(model, tokenizer):
    """The tokenizer must have the model's vocabulary size, and the mask id
    must not be one of its real tokens."""
    size = tokenizer.vocabulary_size()
    if size != model.vocabulary_size:
        raise ValueError(
            f"Tokenizer/model vocabulary mismatch: the tokenizer has "
            f"{size} pieces but the model was configured for "
            f"vocabulary_size={model.vocabulary_size}. Leave "
            "vocabulary_size unset to take the tokenizer's."
        )
    if model.mask_token_id < size:
        piece = tokenizer.id_to_token(model.mask_token_id)
        if piece != "<mask>":
            raise ValueError(
                f"mask_token_id={model.mask_token_id} is the real token "
                f"{piece!r} of the tokenizer, not a '<mask>' piece."
            )


def check_preprocessor_ids(model, preprocessor):
    """The model's sentinel count, EOS and pad ids must be its
    preprocessor's (the ids its data is made with)."""
    for key in ("num_sentinels", "eos_token_id", "pad_token_id"):
        ours, theirs = getattr(model, key), getattr(preprocessor, key)
        if ours != theirs:
            raise ValueError(
                f"Tokenizer/model mismatch: the model was configured for "
                f"{key}={ours} but its tokenizer has {theirs}. Leave {key} "
                "unset to take the tokenizer's."
            )
