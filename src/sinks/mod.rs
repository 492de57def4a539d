//! Sinks: where events leave. One module per type; register it below.

pub mod blackhole;
pub mod console;
pub mod http;

crate::component_registry! { crate::component::SinkConfig;
    "blackhole" => blackhole::BlackholeConfig,
    "console" => console::ConsoleConfig,
    "http" => http::HttpSinkConfig,
}
