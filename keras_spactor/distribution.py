"""Distributed SpacTor-T5 training: JAX layouts and TF strategies.

On the JAX backend, Keras 3's `keras.distribution` API shards the batch
(`DataParallel`) and, with `ModelParallel`, the large kernels too. On the
TensorFlow backend, Keras 3 has no DTensor path: use a `tf.distribute`
strategy (`TPUStrategy` on TPUs, `MirroredStrategy` elsewhere) and build the
model and its optimizer under `strategy.scope()`.

Example (JAX, 8 accelerators, 2-way data x 4-way model parallel):
```python
distribution = keras_spactor.distribution.model_parallel(model_shards=4)
keras_spactor.distribution.check_batch_size(distribution, 64)
keras.distribution.set_distribution(distribution)
model = keras_spactor.SpacTorT5.from_preset("spactor_t5_base", tau=50000)
keras_spactor.distribution.check_layout_map(distribution, model)
model.compile(optimizer="adafactor")
model.fit(dataset, ...)
```

Example (TensorFlow, a TPU when there is one):
```python
strategy = keras_spactor.distribution.tf_strategy()
with strategy.scope():
    model = keras_spactor.SpacTorT5.from_preset("spactor_t5_base")
    model.compile(optimizer="adafactor")
model.fit(dataset, ...)
```
"""

import logging
import re

import keras

from keras_spactor._keras_compat import distribution_layout_map

logger = logging.getLogger(__name__)

DATA_AXIS = "data"
MODEL_AXIS = "model"

# `LayoutMap` keys are regexes that must `re.fullmatch` a variable path and
# match at most one key each. The generator reuses T5's layer classes, so its
# variables (under "generator/") match the same keys as the encoder's.
_ATTENTION = r"(.*/)?(self|cross)_attention/"
_FFN = r"(.*/)?transformer_(encoder_|decoder_)?layer_\d+/"
EMBEDDINGS = "token_embedding/embeddings"
REVERSE_EMBEDDINGS = "token_embedding/reverse_embeddings"
RELATIVE_ATTENTION_BIAS = r"(.*/)?self_attention/embeddings"
ATTENTION_QKV = _ATTENTION + r"(query|key|value)_projector/kernel"
ATTENTION_OUTPUT = _ATTENTION + r"output_projector/kernel"
FFN_INPUT = _FFN + r"(input|gate)_projector/kernel"
FFN_OUTPUT = _FFN + r"output_projector/kernel"
GENERATOR_HEAD = r"generator_head/dense/kernel"
RTD_HEAD = r"rtd_head/dense/kernel"


def layout_map(
    device_mesh,
    model_dim=MODEL_AXIS,
    tie_embedding_weights=False,
    use_gated_activation=True,
):
    """A `keras.distribution.LayoutMap` for a whole `SpacTorT5`.

    Follows keras-hub's `get_layout_map` pattern (Megatron-style): the
    embedding is sharded along the vocabulary, attention query/key/value
    and the FFN input/gate projections along their output features,
    attention and FFN output projections along their input features, and
    the generator-head and RTD-head dense kernels along their outputs, all
    on the mesh's `model_dim` axis. The relative attention biases
    (`[buckets, heads]`, tiny, and a head count rarely divides the axis)
    are replicated explicitly; layer norms and biases are replicated by
    `ModelParallel`'s default. The same keys cover the T5 encoder, decoder
    and SpacTor's generator (which uses T5's layers under `"generator/"`).

    Every sharded dimension must be divisible by the model axis size:
    vocabulary rows, `num_heads * key_value_dim`, `intermediate_dim` and
    `hidden_dim`.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with a `model_dim`
            axis.
        model_dim: str. Name of the mesh axis the kernels are sharded on.
        tie_embedding_weights: bool. The backbone's setting; untied
            backbones (T5 v1.1, the SpacTor presets) also have
            `token_embedding/reverse_embeddings`.
        use_gated_activation: bool. The backbone's setting; gated FFNs (T5
            v1.1) also have `gate_projector` kernels.

    Returns:
        A `keras.distribution.LayoutMap`. Check it against the built model
        with `check_layout_map`.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh(
        (2, 4), ("data", "model"), keras.distribution.list_devices()
    )
    distribution = keras.distribution.ModelParallel(
        layout_map=keras_spactor.distribution.layout_map(mesh),
        batch_dim_name="data",
    )
    ```
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise ValueError(
            "device_mesh must be a keras.distribution.DeviceMesh, got "
            f"{type(device_mesh).__name__}."
        )
    if model_dim not in device_mesh.axis_names:
        raise ValueError(
            f"The model axis {model_dim!r} is not an axis of the device "
            f"mesh (axes: {list(device_mesh.axis_names)}); no variable could "
            "be sharded on it."
        )
    ffn_input = FFN_INPUT
    if not use_gated_activation:
        ffn_input = _FFN + r"input_projector/kernel"
    layouts = keras.distribution.LayoutMap(device_mesh)
    layouts[EMBEDDINGS] = (model_dim, None)
    if not tie_embedding_weights:
        layouts[REVERSE_EMBEDDINGS] = (None, model_dim)
    layouts[RELATIVE_ATTENTION_BIAS] = (None, None)
    layouts[ATTENTION_QKV] = (None, model_dim)
    layouts[ATTENTION_OUTPUT] = (model_dim, None)
    layouts[ffn_input] = (None, model_dim)
    layouts[FFN_OUTPUT] = (model_dim, None)
    layouts[GENERATOR_HEAD] = (None, model_dim)
    layouts[RTD_HEAD] = (None, model_dim)
    return layouts


def unmatched_layout_keys(layouts, model):
    """The keys of `layouts` that `re.fullmatch` no variable path."""
    paths = [variable.path for variable in model.variables]
    return [
        key
        for key in layouts.keys()
        if not any(re.fullmatch(key, path) for path in paths)
    ]


def check_layout_map(layouts, model):
    """Raises `ValueError` if a layout of `layouts` names no variable.

    Keras silently ignores a `LayoutMap` key that matches nothing, so a
    typo (or a layout written for another architecture) would leave the
    weights it meant to shard replicated. Call this once the model is built.

    Args:
        layouts: a `keras.distribution.LayoutMap` (e.g. from `layout_map`),
            or the `keras.distribution.ModelParallel` that holds it.
        model: the built model (e.g. a `SpacTorT5`).

    Example:
    ```python
    keras_spactor.distribution.check_layout_map(
        keras_spactor.distribution.layout_map(mesh), model
    )
    ```
    """
    if isinstance(layouts, keras.distribution.ModelParallel):
        layouts = distribution_layout_map(layouts)
    missing = unmatched_layout_keys(layouts, model)
    if missing:
        examples = [v.path for v in model.variables][:4]
        raise ValueError(
            f"These layouts name no variable of {model.name!r}: {missing}. "
            "Keys are regexes that must fully match a variable path (paths "
            f"look like {examples}). For a backbone with tied embeddings or "
            "a non-gated FFN, pass tie_embedding_weights=True / "
            "use_gated_activation=False to layout_map()."
        )


def _devices(devices=None):
    return list(devices or keras.distribution.list_devices())


def data_parallel(devices=None):
    """`keras.distribution.DataParallel` over all devices (JAX).

    The mesh is `(data,)` of all devices; each batch is split along its
    first axis, so the global batch size must be divisible by the number
    of devices (see `check_batch_size`).

    Args:
        devices: optional list of device names; default
            `keras.distribution.list_devices()`.

    Example:
    ```python
    distribution = keras_spactor.distribution.data_parallel()
    keras.distribution.set_distribution(distribution)
    model = keras_spactor.SpacTorT5.from_preset("spactor_t5_small")
    ```
    """
    devices = _devices(devices)
    mesh = keras.distribution.DeviceMesh(
        shape=(len(devices),), axis_names=(DATA_AXIS,), devices=devices
    )
    return keras.distribution.DataParallel(device_mesh=mesh)


def model_parallel(
    model_shards,
    devices=None,
    tie_embedding_weights=False,
    use_gated_activation=True,
):
    """`keras.distribution.ModelParallel` on a `(data, model)` mesh (JAX).

    The devices form a `(len(devices) // model_shards, model_shards)` mesh:
    kernels are sharded `model_shards` ways (see `layout_map`) and the batch
    is split over the data axis.

    Args:
        model_shards: int. Size of the model axis.
        devices: optional list of device names; default
            `keras.distribution.list_devices()`.
        tie_embedding_weights: bool. See `layout_map`.
        use_gated_activation: bool. See `layout_map`.

    Example:
    ```python
    # 8 devices: 2-way data parallel x 4-way model parallel.
    distribution = keras_spactor.distribution.model_parallel(4)
    keras.distribution.set_distribution(distribution)
    ```
    """
    devices = _devices(devices)
    if isinstance(model_shards, bool) or int(model_shards) != model_shards:
        raise ValueError(f"model_shards must be an int, got {model_shards!r}.")
    model_shards = int(model_shards)
    if model_shards < 1:
        raise ValueError(f"model_shards must be >= 1, got {model_shards}.")
    if model_shards > len(devices):
        raise ValueError(
            f"model_shards={model_shards} is more model-parallel shards than "
            f"there are devices ({len(devices)})."
        )
    if len(devices) % model_shards:
        raise ValueError(
            f"The device count ({len(devices)}) is not divisible by "
            f"model_shards={model_shards}: the (data, model) mesh needs "
            "len(devices) = data_shards * model_shards."
        )
    mesh = keras.distribution.DeviceMesh(
        shape=(len(devices) // model_shards, model_shards),
        axis_names=(DATA_AXIS, MODEL_AXIS),
        devices=devices,
    )
    layouts = layout_map(
        mesh,
        MODEL_AXIS,
        tie_embedding_weights=tie_embedding_weights,
        use_gated_activation=use_gated_activation,
    )
    return keras.distribution.ModelParallel(
        layout_map=layouts, batch_dim_name=DATA_AXIS
    )


def data_shards(distribution):
    """How many ways a batch is split by `distribution` (1 for `None`)."""
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    name = getattr(distribution, "batch_dim_name", DATA_AXIS)
    return int(mesh.shape[list(mesh.axis_names).index(name)])


def check_batch_size(distribution, batch_size):
    """Raises `ValueError` unless `batch_size` splits evenly over the data
    axis of `distribution` (a `keras.distribution.Distribution` or `None`).

    Args:
        distribution: the distribution training will use.
        batch_size: int. The global batch size.

    Example:
    ```python
    check_batch_size(keras_spactor.distribution.data_parallel(), 64)
    ```
    """
    shards = data_shards(distribution)
    if batch_size % shards:
        raise ValueError(
            f"The batch size {batch_size} is not divisible by the data "
            f"axis of the distribution ({shards} shards); use a multiple "
            f"of {shards}."
        )


TPU_FALLBACK_MESSAGE = (
    "keras-spactor: no TPU found ({reason}); falling back to "
    "tf.distribute.MirroredStrategy over {devices}."
)


def tf_strategy(tpu=None):
    """A `tf.distribute` strategy: `TPUStrategy` if a TPU is found, else
    `MirroredStrategy` over the local GPUs (or the CPU).

    The TPU is found with `tf.distribute.cluster_resolver.TPUClusterResolver`
    (on Colab and Cloud TPU VMs it needs no address). Without one, a
    one-line fallback message is printed and logged. Build the model and
    compile it (which creates the optimizer) under `strategy.scope()`.

    Args:
        tpu: optional TPU name or address for the resolver (default: the
            environment's).

    Returns:
        A `tf.distribute.TPUStrategy` or `tf.distribute.MirroredStrategy`.

    Example:
    ```python
    strategy = keras_spactor.distribution.tf_strategy()
    with strategy.scope():
        model = keras_spactor.SpacTorT5.from_preset("spactor_t5_small")
        model.compile(optimizer="adafactor")
    ```
    """
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error) else ""
        strategy = tf.distribute.MirroredStrategy()
        devices = ", ".join(strategy.extended.worker_devices)
        message = TPU_FALLBACK_MESSAGE.format(
            reason=reason or type(error).__name__, devices=devices
        )
        print(message, flush=True)
        logger.info(message)
        return strategy
    return tf.distribute.TPUStrategy(resolver)


def distribute(batch_size, mode="data", model_shards=1, devices=None):
    """Spread training over every device the backend sees, and return the
    scope to build and compile the model in.

    On JAX, sets a `data_parallel()` or `model_parallel(model_shards)`
    distribution (`keras.distribution.set_distribution`) and returns a
    no-op scope. On TensorFlow, returns `tf_strategy().scope()`: a TPU
    when one is found, else the local GPUs or the CPU.

    Args:
        batch_size: int. The global batch size; it must split evenly over
            the data axis (JAX) or the replicas (TensorFlow).
        mode: `"data"` or `"model"` (JAX; TensorFlow's strategies are data
            parallel).
        model_shards: int. The model axis of `mode="model"`.
        devices: optional list of JAX device names; default
            `keras.distribution.list_devices()`.

    Returns:
        A context manager.

    Raises:
        ValueError: the batch does not split evenly, or a bad `mode`.

    Example:
    ```python
    with keras_spactor.distribution.distribute(batch_size=128):
        model = keras_spactor.SpacTorT5.from_preset("spactor_t5_base")
        model.compile(optimizer="adafactor")
    ```
    """
    import contextlib

    if mode not in ("data", "model"):
        raise ValueError(f"mode must be 'data' or 'model', got {mode!r}.")
    if keras.backend.backend() != "jax":
        strategy = tf_strategy()
        replicas = strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(
                f"The batch size {batch_size} is not divisible by the "
                f"{replicas} replicas of {type(strategy).__name__}."
            )
        return strategy.scope()
    if mode == "data":
        distribution = data_parallel(devices)
    else:
        distribution = model_parallel(model_shards, devices)
    check_batch_size(distribution, batch_size)
    keras.distribution.set_distribution(distribution)
    return contextlib.nullcontext()


def initialize_processes(
    coordinator_address=None, num_processes=None, process_id=None
):
    """Join a multi-process JAX run (a TPU pod slice, several GPU hosts).

    Every process runs the same program; this connects them through
    `keras.distribution.initialize`, after which
    `keras.distribution.list_devices()` lists the devices of all processes
    and `distribute` spreads training over them. Call it first, before
    anything runs on JAX. Arguments left out come from
    `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`
    and `KERAS_DISTRIBUTION_PROCESS_ID`, else from the environment a Cloud
    TPU pod sets (there, none is needed).

    Each process then feeds `fit` the same global `tf.data` batches: Keras
    keeps this process's rows of each (`DataParallel`'s
    `auto_shard_dataset`). Data that is not a `tf.data.Dataset` must be
    sliced with `process_rows` instead, with `auto_shard_dataset = False`.
    Write files from one process only (`is_chief()`), but save a model on
    every process (saving runs collectives), the others to a scratch
    folder.

    Args:
        coordinator_address: str. `host:port` of process 0.
        num_processes: int. How many processes take part.
        process_id: int. This process, `0 … num_processes - 1`.

    Returns:
        `(process_index, process_count)`.

    Example:
    ```python
    # On every host, with its own --process-id:
    keras_spactor.distribution.initialize_processes("10.0.0.1:1234", 4, i)
    with keras_spactor.distribution.distribute(batch_size=256):
        model = keras_spactor.SpacTorT5.from_preset("spactor_t5_base")
        model.compile(optimizer="adafactor")
    model.fit(dataset, ...)  # every host passes the same global batches
    ```
    """
    if keras.backend.backend() != "jax":
        raise ValueError(
            "Multi-process training needs the JAX backend (KERAS_BACKEND="
            "jax); on TensorFlow, TPUStrategy reaches a pod slice's hosts "
            "itself (see tf_strategy and per_replica_dataset)."
        )
    if process_id is not None and num_processes is not None:
        if not 0 <= process_id < num_processes:
            raise ValueError(
                f"process_id must be in [0, {num_processes}), got {process_id}."
            )
    keras.distribution.initialize(
        job_addresses=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return process_index(), process_count()


def process_index():
    """This process's index in a multi-process JAX run (0 otherwise)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def process_count():
    """The number of processes of a multi-process JAX run (1 otherwise)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def is_chief():
    """Whether this process writes the run's files (process 0)."""
    return process_index() == 0


def process_rows(batch, index=None, count=None):
    """This process's rows of a global batch: the `index`-th of `count`
    equal slices of every array's first axis, in order, as Keras's
    `DataParallel` assembles a global batch from its processes.

    Args:
        batch: a nested structure of arrays with the global batch first.
        index: int. Default `process_index()`.
        count: int. Default `process_count()`.

    Returns:
        The same structure with `batch_size // count` rows.

    Example:
    ```python
    local = process_rows((x, y, sample_weight))
    ```
    """
    index = process_index() if index is None else index
    count = process_count() if count is None else count
    rows = len(keras.tree.flatten(batch)[0])
    if rows % count:
        raise ValueError(
            f"The batch size {rows} is not divisible by the {count} processes."
        )
    size = rows // count
    return keras.tree.map_structure(
        lambda array: array[index * size : (index + 1) * size], batch
    )


def per_replica_dataset(strategy, dataset_fn, batch_size):
    """Global batches read per host, for a `tf.distribute` strategy.

    On a TPU pod slice each host runs an input pipeline of its own
    (`strategy.distribute_datasets_from_function`). Every pipeline builds
    the same stream of global batches with `dataset_fn()` and keeps its
    rows (the `input_pipeline_id`-th of `num_input_pipelines` equal
    slices), split into per-replica batches in order: replica `r` of the
    strategy gets rows `r * b … (r + 1) * b - 1` of each global batch, as
    with `strategy.experimental_distribute_dataset` on one host.

    Args:
        strategy: a `tf.distribute.Strategy` (`tf_strategy()`).
        dataset_fn: callable returning a `tf.data.Dataset` of global
            batches (e.g. `pretraining_dataset(..., batch_size=batch_size)`).
        batch_size: int. The global batch size.

    Returns:
        A distributed dataset for `model.fit`.

    Example:
    ```python
    strategy = keras_spactor.distribution.tf_strategy()
    dataset = keras_spactor.distribution.per_replica_dataset(
        strategy,
        lambda: keras_spactor.data.pretraining_dataset(
            "tfds:c4/en", tokenizer, batch_size=1024
        ),
        batch_size=1024,
    )
    model.fit(dataset, steps_per_epoch=1000)
    ```
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"The batch size {batch_size} is not divisible by the "
            f"{replicas} replicas of {type(strategy).__name__}."
        )

    def pipeline(context):
        pipelines = context.num_input_pipelines
        rows = batch_size // pipelines
        dataset = dataset_fn().rebatch(rows)
        dataset = dataset.shard(pipelines, context.input_pipeline_id)
        return dataset.rebatch(context.get_per_replica_batch_size(batch_size))

    return strategy.distribute_datasets_from_function(pipeline)
