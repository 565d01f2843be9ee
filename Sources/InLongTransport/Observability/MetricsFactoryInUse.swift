package import CoreMetrics

/// Where metrics go: `factory` if given, else the bootstrapped `MetricsSystem.factory`; `nil` when that is
/// swift-metrics' no-op handler (nothing bootstrapped), so that the caller can skip every metric call.
package func metricsFactoryInUse(_ factory: (any MetricsFactory)?) -> (any MetricsFactory)? {
    let factory = factory ?? MetricsSystem.factory
    return factory is NOOPMetricsHandler ? nil : factory
}
