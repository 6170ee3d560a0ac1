package rerank.udf;

import java.util.HashMap;
import java.util.Map;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * ONLINE_METRICS(model_version, arm, hits, dcg, converted): counts one shown list in the metrics of
 * its (arm, model_version); returns 1.
 *
 * <p>Called once per list by the feedback job (jobs/feedback_job.py), after SQL has reduced the
 * list's samples to: hits = distinct clicked positions at or above k, dcg = the sum of
 * 1 / log2(position + 1) over those positions, converted = any conversion. The arithmetic mirrors
 * jobs/online_eval.py feedback_metrics (binary gains, ideal = all hits on top). Metrics, under the
 * operator's group, per arm and version (Prometheus:
 * flink_taskmanager_job_task_operator_feedback_arm_model_version_NAME{arm,model_version}):
 * counters lists, clicked_lists, converted_lists, ndcg_micros (the NDCG@k sum in millionths: a
 * counter, so rate() works), and gauges ctr, ndcg, conversion_rate (this subtask's totals so far).
 */
public class OnlineMetrics extends ScalarFunction {
    private transient MetricGroup group;
    private transient Map<String, Arm> arms;

    /** One (arm, model_version)'s counters; the gauges read its fields from the reporter's thread. */
    static final class Arm {
        final Counter lists;
        final Counter clicked;
        final Counter converted;
        final Counter ndcgMicros;
        private volatile double ndcgSum;

        Arm(MetricGroup g) {
            lists = g.counter("lists");
            clicked = g.counter("clicked_lists");
            converted = g.counter("converted_lists");
            ndcgMicros = g.counter("ndcg_micros");
            g.gauge("ctr", (Gauge<Double>) () -> ratio(clicked.getCount()));
            g.gauge("ndcg", (Gauge<Double>) () -> ratio(ndcgSum));
            g.gauge("conversion_rate", (Gauge<Double>) () -> ratio(converted.getCount()));
        }

        private double ratio(double numerator) {
            long n = lists.getCount();
            return n == 0 ? 0.0 : numerator / n;
        }

        void add(int hits, double dcg, boolean conversion) {
            double ndcg = ndcg(hits, dcg);
            // Sum before count: a gauge read in between sees a slightly low ratio, never one above 1.
            ndcgSum = ndcgSum + ndcg;  // one writer (the task thread): no lost updates
            ndcgMicros.inc(Math.round(ndcg * 1e6));
            if (hits > 0) {
                clicked.inc();
            }
            if (conversion) {
                converted.inc();
            }
            lists.inc();
        }
    }

    /** NDCG of `hits` clicked positions whose DCG is `dcg`: the ideal puts them at positions 1..hits. */
    static double ndcg(int hits, double dcg) {
        if (hits <= 0) {
            return 0.0;
        }
        double ideal = 0.0;
        for (int r = 0; r < hits; r++) {
            ideal += 1.0 / (Math.log(r + 2) / Math.log(2));
        }
        return dcg / ideal;
    }

    @Override
    public void open(FunctionContext context) throws Exception {
        group = context.getMetricGroup().addGroup("feedback");
        arms = new HashMap<>();
    }

    public Integer eval(String modelVersion, String arm, Integer hits, Double dcg, Boolean converted) {
        // Versions and arms appear at run time (new models, new splits): groups are made on first sight.
        String a = arm == null ? "main" : arm;
        String v = modelVersion == null ? "" : modelVersion;
        Arm counters = arms.computeIfAbsent(a + "\u0000" + v,
                key -> new Arm(group.addGroup("arm", a).addGroup("model_version", v)));
        counters.add(hits == null ? 0 : hits, dcg == null ? 0.0 : dcg, Boolean.TRUE.equals(converted));
        return 1;
    }

    @Override
    public boolean isDeterministic() {
        return false;  // it has an effect (the counters): never folded, reused or dropped by the planner
    }
}
