//! Sources: where events enter. One module per type; register it below.

pub mod file;
pub mod generator;
pub mod kafka;
pub mod postgres;
pub mod status_feed;
pub mod stdin;
pub mod util;
pub mod webhook;

crate::component_registry! { crate::component::SourceConfig;
    "file" => file::FileSourceConfig,
    "generator" => generator::GeneratorConfig,
    "kafka" => kafka::KafkaSourceConfig,
    "postgres" => postgres::PostgresSourceConfig,
    "status_feed" => status_feed::StatusFeedConfig,
    "stdin" => stdin::StdinConfig,
    "webhook" => webhook::WebhookConfig,
}
