//! Transforms: functions over batches between sources and sinks. One module per type;
//! register it below.

pub mod aggregate;
pub mod alert_rule;
pub mod dedupe;
pub mod enrich;
pub mod filter;
pub mod flatten;
pub mod incident;
pub mod remap;
pub mod route;
pub mod sample;
pub mod subscription;
pub mod throttle;

crate::component_registry! { crate::component::TransformConfig;
    "aggregate" => aggregate::AggregateConfig,
    "alert_rule" => alert_rule::AlertRuleConfig,
    "dedupe" => dedupe::DedupeConfig,
    "enrich" => enrich::EnrichConfig,
    "filter" => filter::FilterConfig,
    "flatten" => flatten::FlattenConfig,
    "incident" => incident::IncidentConfig,
    "remap" => remap::RemapConfig,
    "route" => route::RouteConfig,
    "sample" => sample::SampleConfig,
    "subscription" => subscription::SubscriptionConfig,
    "throttle" => throttle::ThrottleConfig,
    "unflatten" => flatten::UnflattenConfig,
}
