//! Sources: where events enter. One module per type; register it below.

pub(crate) mod api;
pub(crate) mod file;
pub(crate) mod fluent;
pub(crate) mod generator;
pub(crate) mod kafka;
pub(crate) mod otlp;
pub(crate) mod postgres;
pub(crate) mod prometheus_remote_write;
pub(crate) mod status_feed;
pub(crate) mod stdin;
pub(crate) mod syslog;
pub(crate) mod util;
pub mod webhook;

crate::component::component_registry! { crate::component::SourceConfig;
    "api" => api::ApiSourceConfig,
    "file" => file::FileSourceConfig,
    "fluent" => fluent::FluentSourceConfig,
    "generator" => generator::GeneratorConfig,
    "kafka" => kafka::KafkaSourceConfig,
    "otlp" => otlp::OtlpSourceConfig,
    "postgres" => postgres::PostgresSourceConfig,
    "prometheus_remote_write" => prometheus_remote_write::RemoteWriteConfig,
    "status_feed" => status_feed::StatusFeedConfig,
    "stdin" => stdin::StdinConfig,
    "syslog" => syslog::SyslogSourceConfig,
    "webhook" => webhook::WebhookConfig,
}
