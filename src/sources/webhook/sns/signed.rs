//! What AWS signed in an SNS envelope: the string to sign, and the signed fields alone.

use base64::Engine;
use vrl::value::Value;

use super::{MessageType, forbidden, malformed};
use crate::sources::webhook::reply::Rejection;

/// What a signature check needs from an envelope (untrusted input: no panics, every
/// missing field named).
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) kind: MessageType,
    pub(crate) topic: String,
    /// The string AWS signed.
    pub(crate) text: String,
    /// SignatureVersion 2 (SHA256) rather than 1 (SHA1).
    pub(crate) sha256: bool,
    pub(crate) signature: Vec<u8>,
    pub(crate) cert_url: String,
    pub(crate) message_id: String,
    pub(crate) timestamp: String,
    /// The signed keys and their values, as the envelope gave them.
    pub(crate) fields: vrl::value::ObjectMap,
}

pub(crate) fn signed_parts(envelope: &Value) -> Result<Signed, Rejection> {
    let fields = envelope
        .as_object()
        .ok_or_else(|| malformed(".", "expected an SNS message object"))?;
    let get = |key: &str| -> Option<String> {
        match fields.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string_lossy().into_owned()),
        }
    };
    let require = |key: &str| get(key).ok_or_else(|| malformed(&format!(".{key}"), "missing"));
    let kind = match require("Type")?.as_str() {
        "Notification" => MessageType::Notification,
        "SubscriptionConfirmation" => MessageType::SubscriptionConfirmation,
        "UnsubscribeConfirmation" => MessageType::UnsubscribeConfirmation,
        other => {
            return Err(malformed(
                ".Type",
                &format!("unknown SNS message type `{other}`"),
            ));
        }
    };
    let keys: &[&str] = match kind {
        MessageType::Notification => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    let mut text = String::new();
    let mut signed_fields = vrl::value::ObjectMap::new();
    for key in keys {
        let value = match *key {
            "Subject" => match get("Subject") {
                Some(v) => v,
                None => continue,
            },
            "SubscribeURL" => get("SubscribeURL")
                .or_else(|| get("SubscribeUrl"))
                .ok_or_else(|| malformed(".SubscribeURL", "missing"))?,
            k => require(k)?,
        };
        // The signed text is `key\nvalue\n` pairs: a newline inside a value could carry
        // a following pair (`MessageId: "id\nSubject\nx"` with no `Subject`) and sign the
        // same text under a new MessageId. Only `Message` is free text.
        if *key != "Message" && value.contains(['\n', '\r']) {
            return Err(forbidden(format!("`{key}` holds a line break")));
        }
        text.push_str(key);
        text.push('\n');
        text.push_str(&value);
        text.push('\n');
        signed_fields.insert((*key).into(), Value::from(value));
    }
    let sha256 = match require("SignatureVersion")?.as_str() {
        "1" => false,
        "2" => true,
        other => return Err(forbidden(format!("unsupported SignatureVersion `{other}`"))),
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(require("Signature")?.trim())
        .map_err(|_| forbidden("the signature is not base64".into()))?;
    let cert_url = get("SigningCertURL")
        .or_else(|| get("SigningCertUrl"))
        .ok_or_else(|| malformed(".SigningCertURL", "missing"))?;
    Ok(Signed {
        kind,
        topic: require("TopicArn")?,
        text,
        sha256,
        signature,
        cert_url,
        message_id: require("MessageId")?,
        timestamp: require("Timestamp")?,
        fields: signed_fields,
    })
}
