//! Sinks: where events leave. One module per type; register it below.

pub mod blackhole;
pub mod console;

crate::component_registry! { crate::component::SinkConfig;
    "blackhole" => blackhole::BlackholeConfig,
    "console" => console::ConsoleConfig,
}
