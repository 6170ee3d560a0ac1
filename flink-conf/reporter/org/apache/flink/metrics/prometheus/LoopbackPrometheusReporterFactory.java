/*
 * Flink's Prometheus reporter (plugins/metrics-prometheus), listening on one address instead of all
 * interfaces: Flink 2.3's PrometheusReporter binds its HTTP server to the wildcard address and has no
 * option for the host. Built into plugins/metrics-prometheus/ by jobs/cluster.py (javac), next to
 * Flink's jar, so that it shares that plugin's class loader.
 *
 *   metrics.reporter.prom.factory.class: org.apache.flink.metrics.prometheus.LoopbackPrometheusReporterFactory
 *   metrics.reporter.prom.host: 127.0.0.1        (default)
 *   metrics.reporter.prom.port: 9250-9260        (a port or a range; the first free one is taken)
 */
package org.apache.flink.metrics.prometheus;

import io.prometheus.client.exporter.HTTPServer;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;
import org.apache.flink.util.NetUtils;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.Iterator;
import java.util.Properties;

public class LoopbackPrometheusReporterFactory implements MetricReporterFactory {

    @Override
    public MetricReporter createMetricReporter(Properties properties) {
        return new LoopbackPrometheusReporter(
                properties.getProperty("host", "127.0.0.1"), properties.getProperty("port", "9249"));
    }

    static final class LoopbackPrometheusReporter extends AbstractPrometheusReporter {
        private final HTTPServer server;

        LoopbackPrometheusReporter(String host, String portRange) {
            HTTPServer started = null;
            Iterator<Integer> ports = NetUtils.getPortRangeFromString(portRange);
            while (started == null && ports.hasNext()) {
                int port = ports.next();
                try {
                    started = new HTTPServer(new InetSocketAddress(host, port), registry);
                    log.info("Started Prometheus reporter HTTP server on {}:{}.", host, port);
                } catch (IOException e) {
                    log.debug("Could not start Prometheus reporter HTTP server on {}:{}.", host, port, e);
                }
            }
            if (started == null) {
                throw new RuntimeException(
                        "Could not start Prometheus reporter HTTP server on any port in " + host + ":" + portRange);
            }
            server = started;
        }

        @Override
        public void close() {
            server.stop();
            super.close();
        }
    }
}
