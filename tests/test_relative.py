"""Length-aware (relative) retention: the configuration, RelativeHardExtract and
RelativeSoftExtract, the encoder, bucketed serving, SavedModel and ONNX export."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_inputs
from layer_testing import check_layer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.model.extract import RelativeHardExtract, RelativeSoftExtract
from power_bert_tf.model.retention import (RelativeRetention, RetentionConfig, encoder_flops,
                                           flop_bound, kept_count, parse_retention, read_out,
                                           retention_from_dict, served_flop_bound)
from power_bert_tf.serving.inference import BucketedPredictor
from tiny_task import NEGATIVE, POSITIVE, VOCAB, tiny_config

N = 32
FRACTIONS = [0.8, 0.45, 0.25]


# ---- The configuration -------------------------------------------------------

def test_kept_count_is_exact_ceil_on_the_fraction_grid():
    # 0.3 * 10 is 3.0000000000000004 in floating point; the count must be 3.
    assert kept_count(0.3, 10) == 3
    assert kept_count(0.7, 10) == 7
    assert kept_count(0.25, 13) == 4  # ceil(3.25)
    assert kept_count(0.0001, 5) == 1  # at least [CLS]
    assert kept_count(1.0, 17) == 17
    for fraction in (0.1, 0.15, 0.33, 0.5, 0.9):
        for length in range(1, 130):
            exact = -(-round(fraction * 10_000) * length // 10_000)
            assert kept_count(fraction, length) == max(1, exact)
            assert kept_count(fraction, length) == max(1, math.ceil(
                round(fraction * 10_000) * length / 10_000 - 1e-9))


def test_relative_configuration_round_trips_and_counts():
    config = RelativeRetention.parse("0.8, 0.45,0.25", N)
    assert config.fractions == (0.8, 0.45, 0.25) and str(config) == "0.8,0.45,0.25"
    assert config.kept_at(16) == (13, 8, 4) and config.kept == (26, 15, 8)
    saved = config.to_dict()
    assert saved == {"retention": [0.8, 0.45, 0.25], "sequence_length": N, "mode": "relative"}
    assert retention_from_dict(saved, "retention.json", "relative") == config
    assert RetentionConfig((8, 4, 2), 16).to_dict()["mode"] == "absolute"


def test_relative_read_out_is_mass_over_n_floored_clipped_non_increasing():
    config = read_out([25.6, 28.0, 8.0, 0.0], N, "relative")
    # 25.6/32 = 0.8; 28/32 = 0.875 -> non-increasing 0.8; 8/32 = 0.25; 0 -> 1e-4.
    assert config.fractions == (0.8, 0.8, 0.25, 0.0001)
    assert read_out([40.0, 32.0], N, "relative").fractions == (1.0, 1.0)
    assert read_out([10.9, 3.2], 16, "absolute").kept == (10, 3)


@pytest.mark.parametrize("fractions, message", [
    ((0.5, 0.6), "non-increasing: layer 2 keeps 0.6 > layer 1 keeps 0.5"),
    ((0.5, 0.0), "layer 2 keeps the fraction 0"),
    ((40, 20), "layer 1 keeps the fraction 40; each must be in \\(0, 1\\] \\(counts at N "
               "need --retention_mode=absolute\\)"),
    ((), "empty"),
])
def test_invalid_relative_configurations_are_one_line_errors(fractions, message):
    with pytest.raises(PowerBertError, match=message) as error:
        RelativeRetention(fractions, N)
    assert "\n" not in str(error.value)


def test_a_configuration_of_the_other_mode_is_refused_in_one_line():
    absolute = RetentionConfig((20, 12, 6), N).to_dict()
    relative = RelativeRetention((0.8, 0.5, 0.2), N).to_dict()
    with pytest.raises(PowerBertError, match=r"^run/retention.json holds a absolute retention "
                                             r"configuration but this run has "
                                             r"--retention_mode=relative; pass "
                                             r"--retention_mode=absolute") as error:
        retention_from_dict(absolute, "run/retention.json", "relative")
    assert "\n" not in str(error.value)
    with pytest.raises(PowerBertError, match="holds a relative retention configuration but "
                                             "this run has --retention_mode=absolute"):
        retention_from_dict(relative, "run/retention.json", "absolute")
    # A file from before the relative mode (no "mode" key) is absolute.
    old = {"retention": [20, 12, 6], "sequence_length": N}
    assert retention_from_dict(old, "old.json", "absolute").kept == (20, 12, 6)
    with pytest.raises(PowerBertError, match="holds a absolute"):
        retention_from_dict(old, "old.json", "relative")
    # On the command line: fractions in the absolute mode, counts in the relative mode.
    with pytest.raises(PowerBertError, match=r"looks like fractions .* pass "
                                             r"--retention_mode=relative") as error:
        parse_retention("0.8,0.5,0.2", N, "absolute")
    assert "\n" not in str(error.value)
    with pytest.raises(PowerBertError, match="comma-separated list of integers"):
        parse_retention("8,x,2", N, "absolute")
    with pytest.raises(PowerBertError, match="counts at N need --retention_mode=absolute"):
        parse_retention("20,12,6", N, "relative")
    with pytest.raises(PowerBertError, match="not a comma-separated list of fractions"):
        parse_retention("0.8,x", N, "relative")
    assert parse_retention("1,1,1", N, "relative").fractions == (1.0, 1.0, 1.0)


def test_served_flop_bound_counts_ceil_f_times_the_bucket():
    config = tiny_config()
    relative = RelativeRetention(tuple(FRACTIONS), N)
    batches = [(10, 16), (3, 32), (5, 16)]
    plain = 15 * encoder_flops(config, 16) + 3 * encoder_flops(config, 32)
    pruned = (15 * encoder_flops(config, 16, (13, 8, 4))
              + 3 * encoder_flops(config, 32, (26, 15, 8)))
    assert served_flop_bound(config, relative, batches) == pytest.approx(plain / pruned)
    # The absolute mode keeps min(l_j, b): a bucket of 16 saves less than at N.
    absolute = RetentionConfig((26, 15, 8), N)
    assert (served_flop_bound(config, absolute, batches)
            < served_flop_bound(config, relative, batches))


# ---- RelativeHardExtract -----------------------------------------------------

def _hidden(batch, length, dim=4):
    return np.broadcast_to(np.arange(length, dtype="float32")[None, :, None],
                           (batch, length, dim)).copy()


def _mask(lengths, padded):
    return (np.arange(padded)[None] < np.asarray(lengths)[:, None]).astype("int32")


def _real_scores(rng, lengths, padded):
    """Distinct positive scores on real tokens, 0 on padding."""
    scores = np.stack([rng.permutation(padded) + 1 for _ in lengths]).astype("float32")
    return scores * _mask(lengths, padded)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.77, 1.0])
def test_relative_hard_extract_keeps_ceil_f_t_at_every_bucket_and_length(fraction):
    rng = np.random.default_rng(0)
    layer = RelativeHardExtract(fraction)
    for padded in (8, 16, 32):
        lengths = list(range(1, padded + 1))
        mask = _mask(lengths, padded)
        scores = _real_scores(rng, lengths, padded)
        hidden, kept_mask, indices = layer(_hidden(len(lengths), padded), mask, scores, mask)
        k = kept_count(fraction, padded)
        assert hidden.shape == (len(lengths), k, 4) and kept_mask.shape == (len(lengths), k)
        for row, length in enumerate(lengths):
            own = kept_count(fraction, length)
            assert int(np.sum(kept_mask[row])) == own, (padded, length)
            kept = np.asarray(indices[row])[np.asarray(kept_mask[row]) == 1]
            best = 1 + np.argsort(-scores[row, 1:], kind="stable")[:own - 1]
            assert kept[0] == 0 and set(kept[1:]) == set(best)  # [CLS] and the top scores
            assert (np.diff(np.asarray(indices[row])) > 0).all()  # ascending positions
            np.testing.assert_array_equal(hidden[row, :, 0], indices[row])


def test_relative_hard_extract_on_a_later_layer_uses_the_input_length():
    # Layer 2 of 0.5 after layer 1 of 0.75 in a bucket of 8: it receives K_1 = 6
    # vectors and gathers K_2 = 4; an input of 5 tokens keeps ceil(0.5 * 5) = 3.
    input_mask = _mask([5, 8], 8)
    first = RelativeHardExtract(0.75)
    rng = np.random.default_rng(1)
    hidden, mask, indices = first(_hidden(2, 8), input_mask, _real_scores(rng, [5, 8], 8),
                                  input_mask)
    np.testing.assert_array_equal(np.sum(mask, axis=1), [4, 6])
    scores = np.random.default_rng(2).random((2, 6)).astype("float32") * np.asarray(mask)
    _, second_mask, _ = RelativeHardExtract(0.5)(hidden, mask, scores, input_mask)
    assert second_mask.shape == (2, 4)
    np.testing.assert_array_equal(np.sum(second_mask, axis=1), [3, 4])
    assert np.all(np.asarray(second_mask) <= 1)


def test_relative_head_selection_keeps_each_inputs_first_positions():
    input_mask = _mask([4, 10], 10)
    _, mask, indices = RelativeHardExtract(0.5, selection="head")(
        _hidden(2, 10), input_mask, None, input_mask)
    np.testing.assert_array_equal(indices, [[0, 1, 2, 3, 4]] * 2)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])


def test_relative_hard_extract_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fraction"):
        RelativeHardExtract(0.0)
    with pytest.raises(ValueError, match="fraction"):
        RelativeHardExtract(1.5)
    with pytest.raises(ValueError, match="selection"):
        RelativeHardExtract(0.5, selection="tail")


@pytest.mark.parametrize("selection", ["attention", "head"])
def test_relative_hard_extract_contract(tmp_path, selection):
    rng = np.random.default_rng(4)

    def args(n):
        lengths = [n, max(1, n // 2)]
        mask = _mask(lengths, n)
        return (rng.normal(size=(2, n, 4)).astype("float32"), mask,
                _real_scores(rng, lengths, n) / (n + 1), mask)

    check_layer(lambda **kw: RelativeHardExtract(0.5, selection=selection, **kw), args,
                tmp_path, num_trainable_weights=0, lengths=(4, 12))


# ---- RelativeSoftExtract -----------------------------------------------------

def test_relative_soft_extract_reads_r_at_the_relative_rank():
    layer = RelativeSoftExtract(sequence_length=8)
    layer(np.zeros((1, 8, 2), "float32"), np.zeros((1, 8), "float32"),
          np.ones((1, 8), "int32"))
    r = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], "float32")
    layer.retention_parameters.assign(r)
    # Real length 4 of 6 positions: ranks 0..3 read r[0], r[2], r[4], r[6]; padding r[7].
    scores = np.array([[0.3, 0.9, 0.1, 0.5, 0.0, 0.0]], "float32")  # ranks 2, 0, 3, 1, 4, 5
    mask = np.array([[1, 1, 1, 1, 0, 0]], "int32")
    out = layer(np.ones((1, 6, 2), "float32"), scores, mask)
    np.testing.assert_allclose(out[0, :, 0], [r[4], r[0], r[6], r[2], r[7], r[7]], atol=1e-7)
    # A full-length input reads r rank by rank, as the absolute Soft-Extract does.
    full = layer(np.ones((1, 8, 2), "float32"), np.arange(8, 0, -1, dtype="float32")[None],
                 np.ones((1, 8), "int32"))
    np.testing.assert_allclose(full[0, :, 0], r, atol=1e-7)


def test_relative_soft_extract_mass_is_the_expected_fraction():
    """mass / N is the fraction of its length an input keeps in expectation, whatever T."""
    n = 64
    layer = RelativeSoftExtract(sequence_length=n, mass_penalty=0.5)
    layer(np.zeros((1, n, 1), "float32"), np.zeros((1, n), "float32"), np.ones((1, n), "int32"))
    r = np.clip(1.2 - np.arange(n) / 40, 0, 1).astype("float32")
    layer.retention_parameters.assign(r)
    fraction = float(layer.mass()) / n
    assert float(sum(layer.losses)) == pytest.approx(0.5 * float(layer.mass()))
    for length in (8, 16, 32, 64):
        scores = np.arange(length, 0, -1, dtype="float32")[None]
        out = layer(np.ones((1, length, 1), "float32"), scores, np.ones((1, length), "int32"))
        assert float(np.mean(out)) == pytest.approx(fraction, abs=1.5 / length)


def test_relative_soft_extract_contract(tmp_path):
    rng = np.random.default_rng(3)

    def args(n):
        lengths = [n, max(1, n - 3)]
        return (rng.normal(size=(2, n, 4)).astype("float32"),
                _real_scores(rng, lengths, n) / (n + 1), _mask(lengths, n))

    check_layer(lambda **kw: RelativeSoftExtract(sequence_length=12, mass_penalty=1e-3, **kw),
                args, tmp_path, num_trainable_weights=1)


# ---- The encoder and serving -------------------------------------------------

def _relative_classifier(fractions=FRACTIONS, seed=0, fit=True) -> BertClassifier:
    keras.utils.set_random_seed(seed)
    encoder = BertEncoder(**tiny_config().to_dict(), extract="hard", retention=fractions,
                          sequence_length=N, retention_mode="relative")
    model = BertClassifier(encoder, 2, dropout=0.0)
    if fit:  # a few steps, so that the logits differ between inputs
        lengths = list(np.random.default_rng(seed).integers(3, N + 1, size=64))
        inputs = random_inputs(64, N, lengths=lengths, seed=seed, vocabulary_size=len(VOCAB))
        ids = inputs["input_word_ids"]
        labels = (np.isin(ids, [VOCAB.index(w) for w in POSITIVE]).sum(1)
                  > np.isin(ids, [VOCAB.index(w) for w in NEGATIVE]).sum(1)).astype("int32")
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(inputs, labels, epochs=5, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def model():
    return _relative_classifier()


def _inputs(lengths, length=N, seed=0):
    return random_inputs(len(lengths), length, lengths=lengths, seed=seed,
                         vocabulary_size=len(VOCAB))


def _kept_sets(outputs, row):
    return [sorted(int(p) for p in np.asarray(positions[row]) if p >= 0)
            for positions in outputs["kept_positions"]]


def test_every_bucket_gives_the_logits_and_kept_sets_of_padding_to_n(model):
    lengths = [1, 2, 5, 8, 11, 16]
    padded = _inputs(lengths)
    reference = model(padded, training=False).numpy()
    assert np.ptp(reference) > 0.05  # the logits differ between inputs
    full = model.encoder(padded, training=False)
    for row, length in enumerate(lengths):  # each input keeps ceil(f_j * T) at N
        assert [len(s) for s in _kept_sets(full, row)] == [kept_count(f, length)
                                                             for f in FRACTIONS]
    copy = BucketedPredictor(model, buckets=(16, 32)).model  # takes any length
    for bucket in (16, 20, 32):
        features = {name: value[:, :bucket] for name, value in padded.items()}
        np.testing.assert_allclose(copy(features, training=False).numpy(), reference,
                                   atol=1e-5, err_msg=str(bucket))
        outputs = copy.encoder(features, training=False)
        assert outputs["kept_positions"][0].shape[1] == kept_count(FRACTIONS[0], bucket)
        for row in range(len(lengths)):
            assert _kept_sets(outputs, row) == _kept_sets(full, row), (bucket, row)


def test_bucketed_predictor_compiles_once_per_bucket(model):
    predictor = BucketedPredictor(model, buckets=(8, 16, 32))
    reference = model(_inputs([3, 7, 12, 20, 31]), training=False).numpy()
    for batch, lengths in enumerate(([3, 7], [5, 6, 4], [12, 9], [20, 31, 3], [2], [14])):
        np.testing.assert_allclose(predictor(_inputs(lengths, seed=batch)),
                                   model(_inputs(lengths, seed=batch), training=False).numpy(),
                                   atol=1e-5)
    assert predictor.trace_counts == {8: 1, 16: 1, 32: 1}
    np.testing.assert_allclose(predictor(_inputs([3, 7, 12, 20, 31])), reference, atol=1e-5)
    assert predictor.trace_counts == {8: 1, 16: 1, 32: 1}


def test_relative_encoder_config_round_trip_and_keras_save(model, tmp_path):
    encoder = model.encoder
    config = encoder.get_config()
    assert config["retention_mode"] == "relative" and config["retention"] == FRACTIONS
    assert BertEncoder.from_config(config).get_config() == config
    assert encoder.retention_config() == RelativeRetention(tuple(FRACTIONS), N)
    path = tmp_path / "relative.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.encoder.retention_mode == "relative"
    assert reloaded.encoder.retention == FRACTIONS
    assert isinstance(reloaded.encoder.get_layer("layer_1_hard_extract"), RelativeHardExtract)
    features = _inputs([4, 9, 30])
    np.testing.assert_allclose(reloaded(features, training=False).numpy(),
                               model(features, training=False).numpy(), atol=1e-6)
    # The absolute encoder's config says so too (and a config without it is absolute).
    absolute = BertEncoder(**tiny_config().to_dict(), extract="hard", retention=[8, 4, 2])
    assert absolute.get_config()["retention_mode"] == "absolute"
    without = {k: v for k, v in absolute.get_config().items() if k != "retention_mode"}
    assert BertEncoder.from_config(without).retention_mode == "absolute"


def test_relative_encoder_refuses_counts():
    with pytest.raises(PowerBertError, match="counts at N need --retention_mode=absolute"):
        BertEncoder(**tiny_config().to_dict(), extract="hard", retention=[20, 12, 6],
                    sequence_length=N, retention_mode="relative")
    with pytest.raises(PowerBertError, match="not an integer"):
        BertEncoder(**tiny_config().to_dict(), extract="hard", retention=FRACTIONS,
                    sequence_length=N)


def test_relative_search_encoder_uses_relative_soft_extract():
    encoder = BertEncoder(**tiny_config().to_dict(), extract="soft", sequence_length=N,
                          retention_mode="relative", mass_lambda=1e-3)
    assert all(isinstance(layer, RelativeSoftExtract) for layer in encoder.soft_extract_layers())
    outputs = encoder(_inputs([5, 20]))
    assert outputs["sequence_output"].shape == (2, N, 32)
    assert encoder.masses() == pytest.approx([float(N)] * 3)


def test_saved_model_export_has_equal_logits(model, tmp_path):
    from power_bert_tf.serving.saved_model import export_saved_model
    from serving_models import tiny_tokenizer

    tokenizer = tiny_tokenizer(tmp_path / "vocab", N)
    path = export_saved_model(model, tokenizer, tmp_path / "export", "sst2", labels=("neg", "pos"),
                              retention=FRACTIONS, task_name="SST-2", is_pair=False)
    loaded = tf.saved_model.load(str(path))
    lengths = [3, 7, 12, 20, 31]
    features = _inputs(lengths)
    expected = tf.nn.softmax(model(features, training=False)).numpy()
    for cut in (N, 16):  # any T: the predictor picks the bucket
        lengths_cut = [min(length, cut) for length in lengths]
        if lengths_cut != lengths:
            continue
        out = loaded.signatures["predict_ids"](**{k: tf.constant(v[:, :cut])
                                                  for k, v in features.items()})
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    short = _inputs([3, 7])
    out = loaded.signatures["predict_ids"](**{k: tf.constant(v[:, :8]) for k, v in short.items()})
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               tf.nn.softmax(model(short, training=False)).numpy(), atol=1e-5)
    meta = loaded.signatures["metadata"]()
    np.testing.assert_allclose(meta["retention"].numpy(), FRACTIONS)
    assert meta["retention"].dtype == tf.float32
    assert '"retention_mode": "relative"' in meta["config"].numpy().decode()


def test_onnx_export_has_equal_logits(model, tmp_path):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    from power_bert_tf.serving.onnx import MODEL_FILE, export_onnx
    from serving_models import tiny_tokenizer

    tiny_tokenizer(tmp_path / "vocab", N)
    path = export_onnx(model, tmp_path / "export", "sst2",
                       vocab_file=tmp_path / "vocab" / "vocab.txt", lower_case=True,
                       max_seq_length=N, labels=("neg", "pos"), task_name="SST-2",
                       is_pair=False, int8=False)
    session = ort.InferenceSession(str(path / MODEL_FILE), providers=["CPUExecutionProvider"])
    lengths = [1, 3, 7, 12, 20, 32]
    features = _inputs(lengths)
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {k: v for k, v in features.items()})))
    np.testing.assert_allclose(outputs["logits"], model(features, training=False).numpy(),
                               atol=1e-4)
    for j, fraction in enumerate(FRACTIONS, start=1):
        positions = outputs[f"kept_positions_{j}"]
        assert positions.shape == (len(lengths), kept_count(fraction, N))
        assert [(row >= 0).sum() for row in positions] == [kept_count(fraction, t)
                                                           for t in lengths]


def test_relative_speedup_bound_beats_absolute_in_short_buckets():
    """Why the relative mode: at the same counts at N, a bucket of short inputs keeps
    ceil(f_j * b) instead of min(l_j, b)."""
    minilm = EncoderConfig(vocabulary_size=30522, num_layers=6, hidden_size=384, num_heads=12,
                           intermediate_size=1536)
    relative = RelativeRetention((0.8, 0.55, 0.35, 0.25, 0.15, 0.1), 128)
    absolute = RetentionConfig(relative.kept, 128)
    batches = [(64, 32)] * 10 + [(64, 64)] * 3 + [(64, 128)]
    padded = flop_bound(minilm, relative)  # the same for both at N (2.40x)
    assert padded == pytest.approx(flop_bound(minilm, absolute))
    assert served_flop_bound(minilm, absolute, batches) < 0.6 * padded  # 1.40x
    assert served_flop_bound(minilm, relative, batches) > 0.95 * padded  # 2.36x
    for bucket in (16, 32, 64):  # in every bucket, nearly the bound at N
        assert served_flop_bound(minilm, relative, [(1, bucket)]) > 0.95 * padded


def test_bench_cases_read_a_relative_retrain_run(tmp_path):
    import json

    from power_bert_tf.bench.cases import Case, build_classifier, retrained_configurations

    path = tmp_path / "SST-2" / "retrain" / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"task": "SST-2", "retention": FRACTIONS,
                                "retention_mode": "relative",
                                "config": {"max_seq_length": N, "model": "embedded"}}))
    found, notes = retrained_configurations(tmp_path)
    assert found == {"SST-2": RelativeRetention(tuple(FRACTIONS), N)} and notes == []
    model = build_classifier(Case("tiny", "tiny", tiny_config(), found["SST-2"]),
                             eliminate=True, sequence_length=None)
    assert model.encoder.retention_mode == "relative" and model.encoder.retention == FRACTIONS


def test_albert_encoder_takes_the_relative_mode():
    from power_bert_tf.model.albert import AlbertEncoder

    encoder = AlbertEncoder(**tiny_config().to_dict(), embedding_size=16, extract="hard",
                            retention=FRACTIONS, sequence_length=N, retention_mode="relative")
    assert isinstance(encoder.get_layer("layer_3_hard_extract"), RelativeHardExtract)
    config = encoder.get_config()
    assert config["retention_mode"] == "relative"
    assert AlbertEncoder.from_config(config).get_config() == config
    outputs = encoder(_inputs([4, 17]))
    assert [(np.asarray(p[1]) >= 0).sum() for p in outputs["kept_positions"]] == [
        kept_count(f, 17) for f in FRACTIONS]
