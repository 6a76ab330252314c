"""The exported SavedModel under real inputs, in a process that cannot import power_bert_tf.

Empty, whitespace-only, invalid UTF-8 and mixed-script texts, batches of 0 and 1,000,
8 threads x 25 requests, a wrong dtype, and a 100,000-character request whose cost is
bounded by the tokenizer's cut to `max_chars` characters.
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from power_bert_tf.serving.saved_model import export_saved_model
from power_bert_tf.serving.inference import valid_utf8
from serving_models import NO_PACKAGE, RETENTION, tiny_classifier, tiny_tokenizer

LABELS = ("neg", "pos")
HUGE_CHARS = 100_000
COST_FACTOR = 5  # a huge request may cost at most this many normal ones (generous)
NORMAL = "the very fine film was good and the actor is superb , a nice story . " * 6
ODD = {"empty": b"", "whitespace": b" \t\n \xc2\xa0 ", "invalid_utf8": b"\xff\xfe\xc3",
       "good_then_invalid": b"a good \xff film",
       "mixed_scripts": "good 映画 фильм φιλμ فيلم 🎬👍🏽 film".encode(),
       "emoji_only": "🎬🍿👍".encode()}

SCRIPT = NO_PACKAGE + textwrap.dedent("""
    import json, threading, time
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    args = json.load(open(sys.argv[2]))
    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    ids = tf.saved_model.load(sys.argv[1]).signatures["predict_ids"]

    def call(texts):
        return serve(text=tf.constant(texts, tf.string))

    def probabilities(texts):
        return call(texts)["probabilities"].numpy()

    out = {}
    odd = {name: bytes.fromhex(text) for name, text in args["odd"].items()}
    result = call(list(odd.values()))
    out["odd"] = {"probabilities": result["probabilities"].numpy().tolist(),
                  "labels": [x.decode() for x in result["label"].numpy()]}
    empty = call(np.array([], dtype=object))
    out["batch0"] = {name: list(value.shape) for name, value in empty.items()}

    texts = args["texts"]
    big = probabilities(texts)
    small = np.concatenate([probabilities(texts[i:i + 10]) for i in range(0, len(texts), 10)])
    out["batch1000_max_diff"] = float(np.abs(big - small).max())
    out["batch1000_shape"] = list(big.shape)

    requests = [texts[i * 4:i * 4 + 1 + i % 5] for i in range(200)]  # 8 threads x 25
    sequential = [probabilities(r) for r in requests]
    concurrent = [None] * len(requests)

    def worker(thread):
        for index in range(thread, len(requests), 8):
            concurrent[index] = probabilities(requests[index])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["threads_max_diff"] = max(float(np.abs(a - b).max())
                                  for a, b in zip(sequential, concurrent))
    out["threads_done"] = sum(c is not None for c in concurrent)

    errors = {}
    for name, thunk in {
            "text_int32": lambda: serve(text=tf.constant([1, 2], tf.int32)),
            "ids_float": lambda: ids(input_word_ids=tf.zeros([1, 4]),
                                     input_mask=tf.ones([1, 4], tf.int32),
                                     input_type_ids=tf.zeros([1, 4], tf.int32))}.items():
        try:
            thunk()
            errors[name] = None
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as error:
            errors[name] = type(error).__name__ + ": " + str(error)
    out["errors"] = errors

    huge = args["huge"]
    normal = args["normal"]
    out["huge_equals_cut"] = float(np.abs(probabilities([huge]) -
                                          probabilities([huge[:args["max_chars"]]])).max())
    times = {"huge": [], "normal": []}
    for _ in range(7):
        for name, text in (("normal", normal), ("huge", huge)):
            start = time.perf_counter()
            probabilities([text])
            times[name].append(time.perf_counter() - start)
    out["seconds"] = {name: min(values) for name, values in times.items()}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_inputs")
    model = tiny_classifier()
    tokenizer = tiny_tokenizer(root / "vocab")
    path = export_saved_model(model, tokenizer, root / "export", "sst2", labels=LABELS,
                              retention=RETENTION, task_name="SST-2", is_pair=False)
    rng = np.random.default_rng(0)
    words = NORMAL.split()
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(1000)]
    huge = (NORMAL * (HUGE_CHARS // len(NORMAL) + 1))[:HUGE_CHARS]
    (root / "args.json").write_text(json.dumps({
        "odd": {name: text.hex() for name, text in ODD.items()}, "texts": texts,
        "huge": huge, "normal": NORMAL, "max_chars": tokenizer.max_chars}))
    (root / "serve.py").write_text(SCRIPT)
    run = subprocess.run([sys.executable, "-I", "serve.py", str(path), "args.json"], cwd=root,
                         capture_output=True, text=True, timeout=900,
                         env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    return {"out": json.loads(run.stdout.strip().splitlines()[-1]), "model": model,
            "tokenizer": tokenizer}


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_odd_texts_give_defined_results(served):
    odd = served["out"]["odd"]
    probabilities = np.array(odd["probabilities"])
    assert probabilities.shape == (len(ODD), 2) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
    assert set(odd["labels"]) <= set(LABELS)
    by_name = dict(zip(ODD, probabilities))
    # Normalization deletes whitespace and invalid bytes: all three are "[CLS] [SEP]".
    np.testing.assert_allclose(by_name["whitespace"], by_name["empty"], atol=1e-6)
    np.testing.assert_allclose(by_name["invalid_utf8"], by_name["empty"], atol=1e-6)
    model, tokenizer = served["model"], served["tokenizer"]
    features = tokenizer(valid_utf8(tf.constant(list(ODD.values()))))
    np.testing.assert_allclose(probabilities, softmax(model(features, training=False).numpy()),
                               atol=1e-5)


def test_batches_of_0_and_1000(served):
    out = served["out"]
    assert out["batch0"] == {"probabilities": [0, 2], "label": [0]}
    assert out["batch1000_shape"] == [1000, 2] and out["batch1000_max_diff"] < 1e-5


def test_8_threads_x_25_requests_equal_sequential_calls(served):
    assert served["out"]["threads_done"] == 200
    assert served["out"]["threads_max_diff"] < 1e-6


def test_wrong_dtype_is_a_clear_error(served):
    errors = served["out"]["errors"]
    assert errors["text_int32"] is not None and "string" in errors["text_int32"]
    assert errors["ids_float"] is not None and "int32" in errors["ids_float"]


def test_a_huge_request_costs_a_small_multiple_of_a_normal_one(served):
    out = served["out"]
    assert out["huge_equals_cut"] < 1e-6
    seconds = out["seconds"]
    print(f"one request: normal {seconds['normal'] * 1e3:.1f} ms, 100,000 characters "
          f"{seconds['huge'] * 1e3:.1f} ms")
    assert seconds["huge"] <= COST_FACTOR * seconds["normal"], seconds
