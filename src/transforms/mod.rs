//! Transforms: functions over batches between sources and sinks. One module per type;
//! register it below.

pub mod filter;
pub mod remap;

crate::component_registry! { crate::component::TransformConfig;
    "filter" => filter::FilterConfig,
    "remap" => remap::RemapConfig,
}
