//! Transforms: functions over batches between sources and sinks. One module per type;
//! register it below.

pub(crate) mod aggregate;
pub mod alert_rule;
pub(crate) mod alertmanager_route;
pub(crate) mod dedupe;
pub(crate) mod enrich;
pub(crate) mod filter;
pub(crate) mod flatten;
pub mod incident;
pub(crate) mod remap;
pub(crate) mod route;
pub(crate) mod sample;
pub mod subscription;
pub(crate) mod throttle;

crate::component::component_registry! { crate::component::TransformConfig;
    "aggregate" => aggregate::AggregateConfig,
    "alert_rule" => alert_rule::AlertRuleConfig,
    "alertmanager_route" => alertmanager_route::AlertmanagerRouteConfig,
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
