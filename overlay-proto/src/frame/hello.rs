//! The HELLO exchange on `app_proto_id` 0 (spec §5): compact JSON payloads.

use std::collections::BTreeMap;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{encode, flags, Frame, FrameError, Header, MAX_FRAME_BYTES};

/// `app_proto_id` of control frames, HELLO included.
const HELLO_APP_PROTO_ID: u16 = 0;

/// Appends a HELLO request to `out`: flags REQ, code 0, `app_proto_id` 0, no cap, payload
/// `{"ua":"<ua>"}` (or `{"ua":null}`).
///
/// Produces the reference bytes (vectors `hello_request`, `hello_request_no_ua`). The only
/// possible failure is a user-agent so long that the frame would exceed [`MAX_FRAME_BYTES`]; then
/// nothing is written. Use [`try_hello_request`] to see that error.
pub fn hello_request(ua: Option<&str>, tenant_id: u128, corr_id: u64, out: &mut BytesMut) {
    // Ignoring the error is the documented behaviour: `out` is left unchanged.
    let _ = try_hello_request(ua, tenant_id, corr_id, out);
}

/// [`hello_request`], reporting [`FrameError::FrameTooLarge`] instead of writing nothing when
/// the user-agent does not fit in one frame.
pub fn try_hello_request(
    ua: Option<&str>,
    tenant_id: u128,
    corr_id: u64,
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    #[derive(Serialize)]
    struct Body<'a> {
        ua: Option<&'a str>,
    }
    let payload = to_json(&Body { ua })?;
    let header = hello_header(flags::REQ, 0, tenant_id, corr_id);
    encode(&header, &[], &payload, out)
}

/// The server's HELLO reply: its limits and what it supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// Largest frame the server accepts, in bytes.
    pub max_frame: u64,
    /// Requests the server allows in flight per connection.
    pub max_inflight: u64,
    /// Flag bits the server understands.
    pub flags_supported: u16,
    /// Protocol versions the server speaks.
    pub versions: Vec<u16>,
    /// Transports the server offers, e.g. `"tcp+tls"`.
    pub transports: Vec<String>,
    /// Any other top-level keys, kept as received (the reference ignores them).
    pub extensions: Map<String, Value>,
}

/// Serialized form: the five reference keys in reference order, then extensions sorted by key.
#[derive(Serialize)]
struct ReplyOut<'a> {
    max_frame: u64,
    max_inflight: u64,
    flags_supported: u16,
    versions: &'a [u16],
    transports: &'a [String],
    #[serde(flatten)]
    extensions: BTreeMap<&'a str, &'a Value>,
}

/// Parsed form: all five keys required, anything else collected.
#[derive(Deserialize)]
struct ReplyIn {
    max_frame: u64,
    max_inflight: u64,
    flags_supported: u16,
    versions: Vec<u16>,
    transports: Vec<String>,
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

/// The five keys the reference reply always carries.
const REPLY_KEYS: [&str; 5] = [
    "max_frame",
    "max_inflight",
    "flags_supported",
    "versions",
    "transports",
];

impl HelloReply {
    /// The reference server's default reply: 1 MiB frames, 64 in flight, all eight flag bits,
    /// version 1, `tcp+tls`, no extensions.
    pub fn default_for_server() -> Self {
        HelloReply {
            max_frame: MAX_FRAME_BYTES as u64,
            max_inflight: 64,
            flags_supported: flags::DEFINED,
            versions: vec![1],
            transports: vec!["tcp+tls".to_owned()],
            extensions: Map::new(),
        }
    }

    /// The compact JSON payload: the five reference keys first, in reference order, then the
    /// extension keys sorted. An extension named like one of the five keys is left out.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serializing integers, strings and JSON values into a Vec cannot fail.
        self.payload_json().unwrap_or_default()
    }

    /// Appends the reply frame to `out`: flags RESP, code 200, `app_proto_id` 0, no cap.
    ///
    /// `HelloReply::default_for_server()` gives the reference bytes (vector
    /// `hello_reply_default`). If the payload would not fit in one frame (only possible with
    /// about 1 MiB of transports or extensions) nothing is written; use
    /// [`try_to_frame`](Self::try_to_frame) to see that error.
    pub fn to_frame(&self, tenant_id: u128, corr_id: u64, out: &mut BytesMut) {
        // Ignoring the error is the documented behaviour: `out` is left unchanged.
        let _ = self.try_to_frame(tenant_id, corr_id, out);
    }

    /// [`to_frame`](Self::to_frame), reporting [`FrameError::FrameTooLarge`] instead of writing
    /// nothing when the payload does not fit.
    pub fn try_to_frame(
        &self,
        tenant_id: u128,
        corr_id: u64,
        out: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let payload = self.payload_json()?;
        let header = hello_header(flags::RESP, 200, tenant_id, corr_id);
        encode(&header, &[], &payload, out)
    }

    /// Parses a reply from a frame's payload (the header is not inspected).
    ///
    /// All five reference keys are required; unknown keys go to
    /// [`extensions`](Self::extensions). A missing payload gives
    /// [`FrameError::PayloadOutOfBounds`]; anything that is not the expected JSON gives
    /// [`FrameError::HelloJson`] (the reference reports that through its `Zstd(String)` variant).
    pub fn from_frame(frame: &Frame) -> Result<HelloReply, FrameError> {
        let payload = frame
            .payload
            .as_ref()
            .ok_or(FrameError::PayloadOutOfBounds)?;
        let reply: ReplyIn =
            serde_json::from_slice(payload).map_err(|e| FrameError::HelloJson(e.to_string()))?;
        Ok(HelloReply {
            max_frame: reply.max_frame,
            max_inflight: reply.max_inflight,
            flags_supported: reply.flags_supported,
            versions: reply.versions,
            transports: reply.transports,
            extensions: reply.extensions,
        })
    }

    fn payload_json(&self) -> Result<Vec<u8>, FrameError> {
        let extensions = self
            .extensions
            .iter()
            .filter(|(key, _)| !REPLY_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.as_str(), value))
            .collect();
        to_json(&ReplyOut {
            max_frame: self.max_frame,
            max_inflight: self.max_inflight,
            flags_supported: self.flags_supported,
            versions: &self.versions,
            transports: &self.transports,
            extensions,
        })
    }
}

fn hello_header(flags: u16, code: u16, tenant_id: u128, corr_id: u64) -> Header {
    Header {
        ver: 1,
        flags,
        code,
        app_proto_id: HELLO_APP_PROTO_ID,
        tenant_id,
        corr_id,
        ..Header::default()
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, FrameError> {
    serde_json::to_vec(value).map_err(|e| FrameError::HelloJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;

    #[test]
    fn default_reply_payload() {
        assert_eq!(
            HelloReply::default_for_server().to_payload(),
            br#"{"max_frame":1048576,"max_inflight":64,"flags_supported":255,"versions":[1],"transports":["tcp+tls"]}"#
        );
    }

    #[test]
    fn extensions_round_trip_sorted_after_reference_keys() {
        let mut reply = HelloReply::default_for_server();
        reply.extensions.insert("zeta".into(), Value::from(1));
        reply.extensions.insert("alpha".into(), Value::from("x"));
        reply.extensions.insert("max_frame".into(), Value::from(5));
        let payload = reply.to_payload();
        assert!(payload.ends_with(br#""transports":["tcp+tls"],"alpha":"x","zeta":1}"#));
        let mut out = BytesMut::new();
        reply.to_frame(7, 8, &mut out);
        let frame = decode(&mut out).unwrap().unwrap();
        assert_eq!(frame.header.flags, flags::RESP);
        assert_eq!(frame.header.code, 200);
        let parsed = HelloReply::from_frame(&frame).unwrap();
        reply.extensions.remove("max_frame");
        assert_eq!(parsed, reply);
    }

    #[test]
    fn from_frame_errors() {
        let mut frame = Frame {
            header: Header::default(),
            cap: None,
            payload: None,
        };
        assert_eq!(
            HelloReply::from_frame(&frame),
            Err(FrameError::PayloadOutOfBounds)
        );
        frame.payload = Some(bytes::Bytes::from_static(b"{\"max_frame\":1}"));
        assert!(matches!(
            HelloReply::from_frame(&frame),
            Err(FrameError::HelloJson(_))
        ));
        frame.payload = Some(bytes::Bytes::from_static(b"not json"));
        assert!(matches!(
            HelloReply::from_frame(&frame),
            Err(FrameError::HelloJson(_))
        ));
    }

    #[test]
    fn oversize_user_agent_writes_nothing() {
        let ua = "a".repeat(MAX_FRAME_BYTES);
        let mut out = BytesMut::new();
        hello_request(Some(&ua), 0, 0, &mut out);
        assert!(out.is_empty());
        assert!(matches!(
            try_hello_request(Some(&ua), 0, 0, &mut out),
            Err(FrameError::FrameTooLarge { .. })
        ));
        hello_request(Some("sdk/0.1"), 0, 0, &mut out);
        assert!(out.ends_with(br#"{"ua":"sdk/0.1"}"#));
    }
}
