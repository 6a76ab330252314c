"""Where batch-1 time goes: BERT-base, batch 1, N=128, plain vs PoWER-BERT, per op.

    python experiments/batch1_profile.py                  # bf16, TF graph (oneDNN)
    python experiments/batch1_profile.py --precision=fp32 --case=bert-base-b32-n256

The benchmark's bert-base-b1-n128 case (random weights, the RTE configuration scaled to
N=128) as a frozen TF graph (variables folded into constants) run by a TF1 session
with tracing on: the time of each op type, and each layer's feed-forward matrix
multiplies against the number of word-vectors they multiply, with a least-squares fit
ms = fixed + per_vector x vectors. The fixed part is what eliminating word-vectors
cannot remove at batch 1. Writes JSON under experiments/results/ (never overwritten).
"""
from __future__ import annotations

import collections
import datetime
import os
import statistics
import time
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2)

from power_bert_tf.bench.cases import build_pair, random_inputs, runtime_case  # noqa: E402
from power_bert_tf.bench.report import git_commit, machine_info, provenance  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.serving.precision import PRECISIONS, with_precision  # noqa: E402
from power_bert_tf.training.checkpoints import write_json_atomic  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
flags.DEFINE_enum("case", "bert-base-b1-n128", ["bert-base-b1-n128", "bert-base-b32-n256",
                                                 "tiny-b2"], "The benchmark's runtime case.")
flags.DEFINE_enum("precision", "bf16", list(PRECISIONS), "Encoder precision.")
flags.DEFINE_integer("repeats", 15, "Untimed-trace passes per model, interleaved.")
flags.DEFINE_integer("traces", 3, "Traced passes per model, averaged per op.")
flags.DEFINE_string("output", None, "JSON path. Default: experiments/results/"
                    "batch1_profile_<precision>_<YYYYmmdd-HHMMSS>.json.")
FLAGS = flags.FLAGS


def frozen_session(model, inputs: dict) -> tuple[tf.compat.v1.Session, list, dict]:
    """A TF1 session over `model`'s frozen inference graph; checks it against the model."""
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(
        {name: tf.TensorSpec(value.shape, value.dtype) for name, value in inputs.items()})
    frozen = convert_variables_to_constants_v2(concrete)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(frozen.graph.as_graph_def(), name="")
    feeds = {graph.get_tensor_by_name(tensor.name): value.numpy()
             for tensor, value in zip(frozen.inputs, tf.nest.flatten(inputs), strict=True)}
    outputs = [graph.get_tensor_by_name(tensor.name) for tensor in frozen.outputs]
    session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=2, inter_op_parallelism_threads=1))
    np.testing.assert_allclose(session.run(outputs, feeds)[0], function(inputs).numpy(),
                               atol=1e-2)
    return session, outputs, feeds


def op_times(session, outputs, feeds, traces: int) -> dict[str, tuple[str, float]]:
    """node name -> (op type, mean ms over `traces` traced runs)."""
    totals: dict[str, list] = collections.defaultdict(lambda: ["", 0.0])
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    for _ in range(traces):
        metadata = tf.compat.v1.RunMetadata()
        session.run(outputs, feeds, options=options, run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                if " = " in node.timeline_label:
                    entry = totals[node.node_name]
                    entry[0] = node.timeline_label.split(" = ")[1].split("(")[0]
                    entry[1] += node.op_end_rel_micros / 1000 / traces
    return {name: (op, ms) for name, (op, ms) in totals.items()}


def feed_forward_matmuls(times: dict, num_layers: int) -> list[float]:
    """Per layer, the ms of its two feed-forward matrix multiplies."""
    return [round(sum(ms for name, (op, ms) in times.items()
                      if f"layer_{j}_feed_forward" in name and "MatMul" in op), 3)
            for j in range(1, num_layers + 1)]


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    started, load_at_start, commit = time.time(), os.getloadavg(), git_commit()
    runtime = runtime_case(FLAGS.case, None)
    case = runtime.case
    n, layers = case.retention.sequence_length, case.config.num_layers
    full, pruned = build_pair(case, sequence_length=n, seed=0)
    inputs = random_inputs(case.config, runtime.batch_size, n, 0)
    vectors = {"plain": [n] * layers, "power-bert": list(case.retention.kept)}
    sessions = {name: frozen_session(with_precision(model, FLAGS.precision), inputs)
                for name, model in (("plain", full), ("power-bert", pruned))}
    timings = {name: [] for name in sessions}
    for _ in range(FLAGS.repeats):
        for name, (session, outputs, feeds) in sessions.items():
            tick = time.perf_counter()
            session.run(outputs, feeds)
            timings[name].append(1000 * (time.perf_counter() - tick))
    report = {"case": FLAGS.case, "batch_size": runtime.batch_size,
              "precision": FLAGS.precision, "retention": vectors["power-bert"],
              "created": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine_info("cpu"), "models": {}}
    points = []
    for name, (session, outputs, feeds) in sessions.items():
        times = op_times(session, outputs, feeds, FLAGS.traces)
        by_op = collections.Counter()
        for op, ms in times.values():
            by_op[op] += ms
        ffn = feed_forward_matmuls(times, layers)
        points += list(zip(vectors[name], ffn))
        report["models"][name] = {
            "ms_median": round(statistics.median(timings[name]), 2),
            "ms_min_max": [round(min(timings[name]), 2), round(max(timings[name]), 2)],
            "ops": len(times), "ms_by_op_type": {op: round(ms, 2)
                                                 for op, ms in by_op.most_common(12)},
            "feed_forward_vectors": vectors[name], "feed_forward_matmul_ms": ffn}
        print(f"{name:<10} {report['models'][name]['ms_median']:7.1f} ms median; "
              f"{len(times)} ops; feed-forward matmuls per layer (ms): {ffn}")
    slope, fixed = np.polyfit(*zip(*points), 1)
    plain, power = (report["models"][m]["ms_median"] for m in ("plain", "power-bert"))
    report["fit"] = {"fixed_ms_per_layer_feed_forward": round(float(fixed), 3),
                     "ms_per_vector": round(float(slope), 5), "points": len(points),
                     "fixed_share_of_power_bert": round(float(fixed) * layers / power, 3),
                     "speedup": round(plain / power, 3)}
    print(f"speed-up {plain / power:.2f}x; feed-forward matmuls of a layer: {fixed:.2f} ms "
          f"fixed + {1000 * slope:.2f} us per word-vector ({fixed * layers:.1f} of PoWER-BERT's "
          f"{power:.1f} ms are fixed feed-forward cost)")
    report["provenance"] = provenance(started, load_at_start, commit, time.time(),
                                      "experiments.batch1_profile")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = Path(FLAGS.output or RESULTS_DIR / f"batch1_profile_{FLAGS.precision}_{stamp}.json")
    if output.exists():
        raise PowerBertError(f"{output} exists; choose another --output")
    write_json_atomic(output, report)
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
