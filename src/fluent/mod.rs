//! fluentd's Forward protocol (v1), shared by the `fluent` source and sink: framing a
//! TCP stream into MessagePack objects ([`frame`]), MessagePack to and from VRL values
//! ([`value`]), the requests and their ack ([`message`]) and the shared-key handshake
//! ([`handshake`]). Every reader here takes untrusted bytes: each is bounded in size,
//! depth, entries and memory, and has a fuzz target.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod value;
