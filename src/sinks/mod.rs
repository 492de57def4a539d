//! Sinks: where events leave. One module per type; register it below.

pub mod blackhole;
pub mod cloudevents;
pub mod console;
pub mod file;
pub mod http;
pub mod kafka;
pub mod pagerduty;
pub mod postgres;
pub mod slack;

crate::component_registry! { crate::component::SinkConfig;
    "blackhole" => blackhole::BlackholeConfig,
    "cloudevents" => cloudevents::CloudEventsConfig,
    "console" => console::ConsoleConfig,
    "file" => file::FileSinkConfig,
    "http" => http::HttpSinkConfig,
    "kafka" => kafka::KafkaSinkConfig,
    "pagerduty" => pagerduty::PagerDutyConfig,
    "postgres" => postgres::PostgresConfig,
    "slack" => slack::SlackConfig,
}
