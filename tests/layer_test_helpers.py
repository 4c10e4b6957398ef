"""Layer checks in the spirit of keras-hub's `run_layer_test`, kept small.

Each check takes a layer (or a factory of layers) and its call arguments as
a dict of keyword arguments (`layer(**inputs)`), and asserts on numbers,
shapes or dtypes, so that it fails when the layer is wrong, not only when it
crashes. `keras_hub.src.tests.test_case` is private; nothing is imported
from it.
"""

import inspect
import json
import os

import keras
import numpy as np


def to_numpy(structure):
    return keras.tree.map_structure(
        lambda v: np.array(keras.ops.convert_to_numpy(v)), structure
    )


def assert_structures_equal(a, b, rtol=None, atol=None):
    """Same structure; values bit-equal, or close where a tolerance is set."""
    a, b = to_numpy(a), to_numpy(b)
    keras.tree.assert_same_structure(a, b)
    for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        assert x.shape == y.shape, (x.shape, y.shape)
        if rtol is None and atol is None:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(
                x.astype("float32"),
                y.astype("float32"),
                rtol=rtol or 0.0,
                atol=atol or 0.0,
            )


def _config_json(layer):
    return json.dumps(layer.get_config(), sort_keys=True, default=str)


def _float_leaves(structure):
    return [
        v
        for v in keras.tree.flatten(structure)
        if keras.backend.is_float_dtype(
            keras.backend.standardize_dtype(v.dtype)
        )
    ]


def _variable_values(layer):
    return [keras.ops.convert_to_numpy(v) for v in layer.variables]


def check_config_round_trip(layer, inputs=None):
    """`from_config(get_config())` and Keras' own (de)serialization.

    Asserts that the revived layer has the same JSON config and the same
    public attributes (`dir`), under both `cls.from_config` and
    `keras.saving.deserialize_keras_object` of the JSON text (which needs
    the class registered). With `inputs`, also that a revived layer given
    the original's variables computes the same outputs, bit for bit.

    Returns the layer revived by `from_config`.
    """
    config_json = _config_json(layer)
    revived = layer.__class__.from_config(layer.get_config())
    assert _config_json(revived) == config_json
    assert set(dir(revived)) == set(dir(layer))

    serialized = json.loads(
        json.dumps(keras.saving.serialize_keras_object(layer))
    )
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is type(layer)
    assert _config_json(deserialized) == config_json

    if inputs is not None:
        expected = layer(**inputs)
        if not revived.built:
            revived(**inputs)
        assert len(revived.variables) == len(layer.variables)
        for target, value in zip(revived.variables, _variable_values(layer)):
            assert tuple(target.shape) == value.shape, (target.path,)
            target.assign(value)
        assert_structures_equal(revived(**inputs), expected)
    return revived


def _shapes(structure):
    return keras.tree.map_structure(lambda v: tuple(v.shape), structure)


def check_output_shape(
    layer, inputs, unknown_dims=None, compute_output_shape=True
):
    """`compute_output_shape`/`compute_output_spec` against the real output.

    Asserts that the shapes the layer promises equal those of an eager
    call: `compute_output_shape(<name>_shape=...)` (unless
    `compute_output_shape=False`, for a model that, like keras-hub's tasks,
    only traces) and the symbolic call on `keras.KerasTensor`s, whose dtypes
    must also match. `unknown_dims` maps an input name to axes given as
    `None` in a second symbolic call (to every tensor under that name, for
    a dict input): each output dimension must then be `None` or the real
    size, at the real rank.

    Returns the eager output.
    """
    output = layer(**inputs)
    real_shapes = _shapes(output)

    if compute_output_shape:
        # Keras' rule: one parameter takes the first input's shape,
        # several are named `<call argument>_shape`.
        shapes = {f"{k}_shape": _shapes(v) for k, v in inputs.items()}
        parameters = inspect.signature(layer.compute_output_shape).parameters
        if len(parameters) == 1:
            promised = layer.compute_output_shape(next(iter(shapes.values())))
        else:
            promised = layer.compute_output_shape(**shapes)
        if isinstance(promised, list) and all(
            isinstance(d, (int, type(None))) for d in promised
        ):
            promised = tuple(promised)
        assert promised == real_shapes, (promised, real_shapes)

    def symbolic(value, axes=()):
        shape = [None if i in axes else d for i, d in enumerate(value.shape)]
        return keras.KerasTensor(tuple(shape), dtype=value.dtype)

    spec = layer.compute_output_spec(
        **keras.tree.map_structure(symbolic, inputs)
    )
    assert _shapes(spec) == real_shapes, (_shapes(spec), real_shapes)
    keras.tree.assert_same_structure(spec, output)
    for s, o in zip(keras.tree.flatten(spec), keras.tree.flatten(output)):
        assert keras.backend.standardize_dtype(
            s.dtype
        ) == keras.backend.standardize_dtype(o.dtype), (s.dtype, o.dtype)

    if unknown_dims:
        partly_known = {
            k: keras.tree.map_structure(
                lambda v, axes=tuple(unknown_dims.get(k, ())): symbolic(
                    v, axes
                ),
                v,
            )
            for k, v in inputs.items()
        }
        spec = layer.compute_output_spec(**partly_known)
        for s, o in zip(keras.tree.flatten(spec), keras.tree.flatten(output)):
            assert len(s.shape) == len(o.shape), (s.shape, o.shape)
            for promised_dim, real_dim in zip(s.shape, o.shape):
                assert promised_dim in (None, real_dim), (s.shape, o.shape)
    return output


def check_mixed_bfloat16_call(
    layer_factory, inputs, rtol=0.1, atol=0.1, output_dtype="bfloat16"
):
    """A layer built under the global `mixed_bfloat16` policy.

    `layer_factory()` is called once under the float32 policy and once
    under `mixed_bfloat16` (the global policy is restored afterwards, also
    on failure). Asserts that the mixed layer's policy is mixed_bfloat16,
    its float variables are float32, its float outputs are finite and of
    `output_dtype` (the compute dtype, unless told otherwise), and that,
    given the float32 layer's variables, it computes the float32 outputs
    within `rtol`/`atol` (bfloat16 keeps 8 bits).

    Returns `(float32_layer, mixed_layer)`, with equal variables.
    """
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("float32")
        reference = layer_factory()
        expected = reference(**inputs)
        keras.config.set_dtype_policy("mixed_bfloat16")
        layer = layer_factory()
        if not layer.built:
            layer(**inputs)
    finally:
        keras.config.set_dtype_policy(previous)

    assert layer.dtype_policy.name == "mixed_bfloat16"
    assert layer.compute_dtype == "bfloat16"
    for variable in layer.variables:
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if keras.backend.is_float_dtype(dtype):
            assert dtype == "float32", (variable.path, dtype)
    assert len(layer.variables) == len(reference.variables)
    for target, value in zip(layer.variables, _variable_values(reference)):
        target.assign(value)
    output = layer(**inputs)
    floats = _float_leaves(output)
    assert floats, "the layer has no float output to check"
    for value in floats:
        dtype = keras.backend.standardize_dtype(value.dtype)
        assert dtype == output_dtype, (dtype, output_dtype)
        assert np.all(np.isfinite(to_numpy(value).astype("float32")))
    assert_structures_equal(output, expected, rtol=rtol, atol=atol)
    return reference, layer


def functional_wrapper(layer, inputs):
    """A functional `keras.Model` whose inputs are `inputs`' names/shapes."""
    symbolic = {
        k: keras.Input(batch_shape=tuple(v.shape), dtype=v.dtype, name=k)
        for k, v in inputs.items()
    }
    return keras.Model(symbolic, layer(**symbolic))


def check_keras_file_round_trip(model_or_layer, inputs, tmp_path):
    """Save to `.keras`, `keras.saving.load_model`, compare outputs.

    A `keras.Model` is saved as it is and called as `model(inputs)`; a
    layer is wrapped in `functional_wrapper` first. Asserts the loaded
    object is of the same class (for a layer: the wrapped layer is) and
    that its outputs equal the original's bit for bit.

    Returns the loaded model.
    """
    if isinstance(model_or_layer, keras.Model):
        model = model_or_layer
    else:
        model = functional_wrapper(model_or_layer, inputs)
    expected = model(inputs)
    path = os.path.join(str(tmp_path), "round_trip.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    if model is not model_or_layer:
        (wrapped,) = [
            layer
            for layer in loaded.layers
            if type(layer) is type(model_or_layer)
        ]
        assert _config_json(wrapped) == _config_json(model_or_layer)
    assert_structures_equal(loaded(inputs), expected)
    return loaded
