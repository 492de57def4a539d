//! Sinks: where events leave. One module per type; register it below.

pub(crate) mod blackhole;
pub mod cloudevents;
pub(crate) mod console;
pub(crate) mod datadog;
pub(crate) mod elasticsearch;
pub(crate) mod email;
pub(crate) mod file;
pub(crate) mod fluent;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod opsgenie;
pub(crate) mod otlp;
pub(crate) mod pagerduty;
pub(crate) mod postgres;
pub(crate) mod prometheus_exporter;
pub(crate) mod slack;
pub(crate) mod syslog;
pub(crate) mod teams;

crate::component::component_registry! { crate::component::SinkConfig;
    "blackhole" => blackhole::BlackholeConfig,
    "cloudevents" => cloudevents::CloudEventsConfig,
    "console" => console::ConsoleConfig,
    "datadog" => datadog::DatadogConfig,
    "elasticsearch" => elasticsearch::ElasticsearchConfig,
    "email" => email::EmailConfig,
    "file" => file::FileSinkConfig,
    "fluent" => fluent::FluentSinkConfig,
    "http" => http::HttpSinkConfig,
    "kafka" => kafka::KafkaSinkConfig,
    "opsgenie" => opsgenie::OpsgenieConfig,
    "otlp" => otlp::OtlpSinkConfig,
    "pagerduty" => pagerduty::PagerDutyConfig,
    "postgres" => postgres::PostgresConfig,
    "prometheus_exporter" => prometheus_exporter::PrometheusExporterConfig,
    "slack" => slack::SlackConfig,
    "syslog" => syslog::SyslogSinkConfig,
    "teams" => teams::TeamsConfig,
}
