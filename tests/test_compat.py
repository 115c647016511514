"""The Keras internals transferkit relies on (`transferkit._compat`), pinned.

Each test checks one assumption `_compat` makes about Keras (or KerasHub,
KaggleHub) and says which internal changed when a release breaks it, so that
an upgrade fails here, loudly, instead of leaving transferkit silently wrong.
Nothing is downloaded: `file://` URLs and a `requests` adapter that fails the
way a machine without DNS does stand in for the network.
"""

import os
import uuid

import keras
import numpy as np
import pytest
from keras.src.backend import config as keras_config

from transferkit import _compat as compat

CHANGED = "Keras internal changed ({}); update transferkit/_compat.py"


def small_functional():
    inputs = keras.Input((4,), name="x")
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(a)
    outputs = keras.layers.Add(name="add")([a, b])
    return keras.Model(inputs, outputs, name="small")


class Block(keras.layers.Layer):
    """A composite layer: two sublayers, one of them composite itself."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4, name="dense")
        self.inner = keras.layers.MultiHeadAttention(2, 2, dropout=0.1, name="attention")
        self.drop = keras.layers.Dropout(0.5, name="drop")

    def call(self, x, training=None):
        x = self.dense(x)
        return self.drop(self.inner(x, x, training=training), training=training)


# ------------------------------------------------------------ layers and graphs


def test_functional_models_are_told_apart_by_class_and_config():
    model = small_functional()
    message = CHANGED.format("keras.Model(inputs, outputs) is no longer a "
                             "keras.src.models.functional.Functional")
    assert compat.is_functional(model) and compat.has_functional_config(model), message
    # What `has_functional_config` stands for: the config is the layers' configs and graph.
    config = model.get_config()
    assert {"layers", "input_layers", "output_layers"} <= set(config), CHANGED.format(
        "Functional.get_config no longer holds layers, input_layers, output_layers")
    assert [layer["config"]["name"] for layer in config["layers"]] == ["x", "a", "b", "add"]

    class Rebuilt(keras.Model):  # a subclass of Functional, rebuilt from its arguments
        def __init__(self, units=3, **kwargs):
            inputs = keras.Input((4,))
            super().__init__(inputs, keras.layers.Dense(units)(inputs), **kwargs)
            self.units = units

        def get_config(self):
            return {"units": self.units, "name": self.name}

    rebuilt = Rebuilt()
    assert compat.is_functional(rebuilt), CHANGED.format(
        "a keras.Model subclass built from inputs and outputs is no longer a Functional")
    assert not compat.has_functional_config(rebuilt), CHANGED.format(
        "Functional.get_config, overridden by a subclass, no longer told apart")
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert not compat.is_functional(sequential) and not compat.has_functional_config(sequential)
    assert not compat.is_functional(keras.layers.Dense(2))


def test_keras_hub_backbones_are_functional_with_their_own_config():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False,
    )
    assert compat.is_functional(backbone), CHANGED.format(
        "KerasHub backbones are no longer keras.src.models.functional.Functional")
    assert not compat.has_functional_config(backbone), CHANGED.format(
        "KerasHub backbones no longer override Functional.get_config")
    assert "layers" not in backbone.get_config()


def test_sublayers_lists_a_composite_layers_own_layers_in_order():
    block = Block()
    block(np.zeros((2, 3, 4), "float32"))
    message = CHANGED.format("Layer._flatten_layers(include_self=False, recursive=False)")
    assert compat.sublayers(block) == [block.dense, block.inner, block.drop], message
    inner = compat.sublayers(block.inner)
    assert any(layer is block.inner._dropout_layer for layer in inner), message
    assert all(isinstance(layer, keras.layers.Layer) for layer in inner), message
    assert compat.sublayers(keras.layers.Dense(2)) == []


def test_graph_nodes_are_the_models_own_calls():
    model = small_functional()
    a, b, add = (model.get_layer(n) for n in ("a", "b", "add"))
    # `a` called again in another model: that call is not `model`'s.
    other_inputs = keras.Input((4,))
    keras.Model(other_inputs, a(other_inputs))
    calls = list(compat.graph_nodes(model))
    message = CHANGED.format("Functional._nodes_by_depth, Node.operation/input_tensors/outputs")
    names = [layer.name for layer, _, _ in calls]
    assert sorted(names) == ["a", "add", "b", "x"], message
    nodes = {layer.name: (inputs, outputs) for layer, inputs, outputs in calls}
    add_inputs, add_outputs = nodes["add"]
    assert [compat.source_layer(t) for t in add_inputs] == [a, b], CHANGED.format(
        "KerasTensor._keras_history.operation")
    assert add_outputs == model.outputs
    assert compat.source_layer(model.inputs[0]) is model.layers[0]
    assert isinstance(compat.source_layer(model.inputs[0]), keras.layers.InputLayer)

    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    layers = [layer.name for layer, _, _ in compat.graph_nodes(sequential)]
    assert "d" in layers, CHANGED.format("Sequential._functional")
    assert compat.source_layer(sequential.outputs[0]) is sequential.get_layer("d")


def test_set_own_trainable_leaves_the_layers_flags():
    model = small_functional()
    model.get_layer("a").trainable = False
    trainable = len(model.trainable_weights)
    compat.set_own_trainable(model, False)
    message = CHANGED.format("Layer._trainable behind the trainable property")
    assert model.trainable is False, message
    assert model.get_layer("b").trainable and not model.get_layer("a").trainable, message
    compat.set_own_trainable(model, True)
    assert model.trainable is True and len(model.trainable_weights) == trainable, message
    # The public setter, by contrast, sets every layer's flag.
    model.trainable = False
    assert not model.get_layer("b").trainable


def test_run_graph_inlines_the_layers_sharing_their_weights():
    backbone = small_functional()
    images = keras.Input((4,))
    scaled = keras.layers.Rescaling(0.5, name="scale")(images)
    outer = keras.Model(images, compat.run_graph(backbone, [scaled]))
    message = CHANGED.format("Function._run_through_graph(inputs, operation_fn)")
    assert [layer.name for layer in outer.layers][1:] == ["scale", "a", "b", "add"], message
    assert all(outer.get_layer(n) is backbone.get_layer(n) for n in ("a", "b", "add")), message
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outer(x)),
                               keras.ops.convert_to_numpy(backbone(x * 0.5)), atol=1e-6)

    # Dict outputs keep their structure.
    inputs = keras.Input((4,))
    two = keras.Model(inputs, {"first": keras.layers.Dense(2)(inputs), "second": inputs})
    out = compat.run_graph(two, [images])
    assert isinstance(out, dict) and set(out) == {"first", "second"}, message


# ------------------------------------------------------------------ variables


@pytest.mark.parametrize("make, public", [
    (lambda: keras.layers.Dense(3), "kernel"),
    (lambda: keras.layers.EinsumDense("ab,bc->ac", output_shape=3), "kernel"),
    (lambda: keras.layers.Embedding(10, 3), "embeddings"),
])
def test_lora_layers_keep_their_variable_behind_the_property(make, public):
    layer = make()
    layer.build((None, 4) if public == "kernel" else (None,))
    private = compat.LORA_BASE_ATTRIBUTES[public]
    message = CHANGED.format(f"{type(layer).__name__}.{private}")
    variable = getattr(layer, private, None)
    assert isinstance(variable, keras.Variable), message
    assert getattr(layer, public) is variable, message
    assert any(w is variable for w in layer.weights), message
    layer.enable_lora(2)
    # With LoRA the property is a tensor; the variable is still there.
    assert not isinstance(getattr(layer, public), keras.Variable)
    assert getattr(layer, private) is variable, message


# ------------------------------------------------------------------ downloads


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A fresh KERAS_HOME (Keras reads the variable once, at import)."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    return home


def test_keras_cache_dir_is_where_get_file_downloads(keras_home, tmp_path):
    source = tmp_path / "weights.h5"
    source.write_bytes(b"weights")
    name = f"transferkit-{uuid.uuid4().hex}.h5"
    path = keras.utils.get_file(name, origin=source.as_uri(), cache_subdir="models")
    message = CHANGED.format("keras_home() and get_file's cache folder")
    assert compat.keras_cache_dir() == str(keras_home), message
    assert path == os.path.join(compat.keras_cache_dir(), "models", name), message


def test_keras_cache_dir_does_not_follow_get_files_fallback(tmp_path, monkeypatch):
    # A home that cannot be written (here: missing) sends get_file to the
    # world-writable /tmp/.keras. transferkit's own caches stay out of it.
    home = tmp_path / "missing"
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    source = tmp_path / "weights.h5"
    source.write_bytes(b"weights")
    name = f"transferkit-{uuid.uuid4().hex}.h5"
    path = keras.utils.get_file(name, origin=source.as_uri(), cache_subdir="models")
    try:
        assert path == os.path.join("/tmp", ".keras", "models", name), CHANGED.format(
            "get_file's fallback folder for an unwritable KERAS_HOME")
        assert compat.keras_cache_dir() == str(home)
    finally:
        os.remove(path)


def test_get_file_failures_are_told_apart(keras_home, tmp_path):
    missing = (tmp_path / "nowhere.h5").as_uri()
    with pytest.raises(Exception) as network:
        keras.utils.get_file("nowhere.h5", origin=missing, cache_subdir="models")
    message = CHANGED.format("keras.utils.get_file's network error")
    assert compat.raised_in_get_file(network.value), message
    assert str(network.value).startswith(compat.GET_FILE_FAILURE), message

    source = tmp_path / "weights.h5"
    source.write_bytes(b"weights")
    with pytest.raises(ValueError) as bad_hash:
        keras.utils.get_file("bad.h5", origin=source.as_uri(), cache_subdir="models",
                             file_hash="0" * 64)
    assert not str(bad_hash.value).startswith(compat.GET_FILE_FAILURE)
    assert compat.raised_in_get_file(bad_hash.value), CHANGED.format(
        "keras.utils.get_file's frame in the traceback of its errors")

    try:
        raise ValueError("an unrelated error")
    except ValueError as e:
        assert not compat.raised_in_get_file(e)


@pytest.fixture
def offline_kaggle(tmp_path, monkeypatch):
    """An empty KaggleHub cache, and no network: any request fails like DNS does offline."""
    requests = pytest.importorskip("requests")
    pytest.importorskip("kagglehub")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))

    def offline(self, request, *args, **kwargs):
        raise requests.exceptions.ConnectionError(
            f"Failed to resolve {request.url} ([Errno -2] Name or service not known)")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", offline)
    return tmp_path / "kagglehub"


HANDLE = "keras/resnetv1/keras/resnet_18_imagenet/3"


def test_preset_download_failures_are_told_apart(offline_kaggle, tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    with pytest.raises(Exception) as download:
        keras_hub.models.Backbone.from_preset("kaggle://" + HANDLE)
    assert compat.raised_in_preset_download(download.value), CHANGED.format(
        f"KerasHub no longer downloads presets through {compat.PRESET_DOWNLOADERS}")

    folder = tmp_path / "broken_preset"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(Exception) as reading:
        keras_hub.models.Backbone.from_preset(str(folder))
    assert not compat.raised_in_preset_download(reading.value)


def test_kaggle_cache_is_read_where_kagglehub_keeps_it(offline_kaggle):
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_model_handle

    path = compat.kaggle_cached_path(HANDLE)
    message = CHANGED.format("kagglehub.cache.get_cached_path / Cache.load_from_cache")
    assert os.path.commonpath([path, str(offline_kaggle)]) == str(offline_kaggle), message
    assert path.endswith(os.path.join("resnet_18_imagenet", "3")), message
    assert not compat.kaggle_files_cached(HANDLE, ["config.json"])
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{}")
    # On disk but not marked complete (an interrupted download): not cached.
    assert not compat.kaggle_files_cached(HANDLE, ["config.json"]), message
    Cache().mark_as_complete(parse_model_handle(HANDLE), "config.json")
    assert compat.kaggle_files_cached(HANDLE, ["config.json"]), message
    assert not compat.kaggle_files_cached(HANDLE, ["config.json", "model.weights.h5"])


# ------------------------------------------------------------------ optimizers


def test_public_optimizer_class_is_the_exported_keras_class():
    for name in ("SGD", "Adam", "AdamW", "RMSprop"):
        cls = getattr(keras.optimizers, name)
        assert compat.public_optimizer_class(cls(1e-3)) is cls, CHANGED.format(
            f"optimizer classes ({name}'s backend subclass)")


def test_learning_rate_schedule_is_the_object_the_optimizer_was_made_with():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.5)
    optimizer = keras.optimizers.SGD(schedule)
    assert compat.learning_rate_schedule(optimizer) is schedule, CHANGED.format(
        "Optimizer._learning_rate")


def test_keras_applies_weight_decay_through_the_hook_transferkit_overrides(monkeypatch):
    calls = []
    base = compat.public_optimizer_class(keras.optimizers.AdamW(1e-3))
    original = getattr(base, compat.WEIGHT_DECAY_HOOK, None)
    assert original is not None, CHANGED.format(f"{base.__name__}.{compat.WEIGHT_DECAY_HOOK}")

    def spy(self, variables):
        calls.append(len(variables))
        return original(self, variables)

    monkeypatch.setattr(base, compat.WEIGHT_DECAY_HOOK, spy)
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer = keras.optimizers.AdamW(0.1, weight_decay=0.5)
    optimizer.apply([keras.ops.zeros(3)], [variable])
    assert calls == [1], CHANGED.format("AdamW.apply no longer calls "
                                        f"{compat.WEIGHT_DECAY_HOOK}(variables)")
    # Zero gradient: only the decay moved the weight, by lr * weight_decay.
    np.testing.assert_allclose(np.asarray(variable), np.full(3, 1 - 0.1 * 0.5), rtol=1e-6)


def test_inbound_nodes_lead_back_to_the_calling_layers():
    model = small_functional()
    (node,) = compat.inbound_nodes(model.get_layer("b"))
    assert [p.operation for p in node.parent_nodes] == [model.get_layer("a")], CHANGED.format(
        "Layer._inbound_nodes / Node.parent_nodes")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's internals")
def test_the_multi_worker_internals_are_where_the_fixes_expect_them():
    # fix_multi_worker_fit replaces these two; tests/test_distributed.py runs them.
    from keras.src.backend.tensorflow import trainer
    from tensorflow.python.distribute import collective_all_reduce_strategy
    from tensorflow.python.eager import context

    assert callable(getattr(trainer, "reduce_per_replica", None)), \
        CHANGED.format("keras.src.backend.tensorflow.trainer.reduce_per_replica")
    assert callable(getattr(trainer, "_collective_all_reduce_multi_worker", None)), \
        CHANGED.format("trainer._collective_all_reduce_multi_worker")
    assert callable(getattr(trainer.TensorFlowTrainer, "_maybe_symbolic_build", None)), \
        CHANGED.format("TensorFlowTrainer._maybe_symbolic_build")
    assert callable(getattr(keras.Model, "_symbolic_build", None)), \
        CHANGED.format("Trainer._symbolic_build")
    # bound_multi_worker_waits sets these class attributes before a strategy is made.
    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    for name in ("_check_health_initial_timeout", "_check_health_interval",
                 "_check_health_timeout", "_check_health_retry_limit"):
        assert hasattr(extended, name), CHANGED.format(f"TensorFlow: {name}")
    assert callable(context.context().configure_coordination_service)
