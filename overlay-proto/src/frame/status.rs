//! Named status codes for the header's `code` field (spec §6).

/// The status codes upstream names. On the wire `code` is a plain u16; any value may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum StatusCode {
    /// 200 OK.
    Ok = 200,
    /// 206 Partial Content.
    Partial = 206,
    /// 400 Bad Request.
    BadRequest = 400,
    /// 401 Unauthorized.
    Unauthorized = 401,
    /// 403 Forbidden.
    Forbidden = 403,
    /// 404 Not Found.
    NotFound = 404,
    /// 413 Payload Too Large.
    PayloadTooLarge = 413,
    /// 429 Too Many Requests.
    TooManyRequests = 429,
    /// 500 Internal Server Error.
    Internal = 500,
    /// 503 Service Unavailable.
    Unavailable = 503,
}

impl StatusCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The named code for `code`, or `None` for a code upstream does not name.
    pub fn from_u16(code: u16) -> Option<StatusCode> {
        Some(match code {
            200 => StatusCode::Ok,
            206 => StatusCode::Partial,
            400 => StatusCode::BadRequest,
            401 => StatusCode::Unauthorized,
            403 => StatusCode::Forbidden,
            404 => StatusCode::NotFound,
            413 => StatusCode::PayloadTooLarge,
            429 => StatusCode::TooManyRequests,
            500 => StatusCode::Internal,
            503 => StatusCode::Unavailable,
            _ => return None,
        })
    }

    /// The reason text, e.g. `"Payload Too Large"`.
    pub fn reason(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::Partial => "Partial Content",
            StatusCode::BadRequest => "Bad Request",
            StatusCode::Unauthorized => "Unauthorized",
            StatusCode::Forbidden => "Forbidden",
            StatusCode::NotFound => "Not Found",
            StatusCode::PayloadTooLarge => "Payload Too Large",
            StatusCode::TooManyRequests => "Too Many Requests",
            StatusCode::Internal => "Internal Server Error",
            StatusCode::Unavailable => "Service Unavailable",
        }
    }
}

impl From<StatusCode> for u16 {
    fn from(code: StatusCode) -> u16 {
        code.as_u16()
    }
}

/// The metrics class of any code, as upstream counts it: `"success"` for 2xx, `"server_error"`
/// for 5xx, and `"client_error"` for 4xx and everything else.
pub fn classify(code: u16) -> &'static str {
    match code / 100 {
        2 => "success",
        5 => "server_error",
        _ => "client_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [StatusCode; 10] = [
        StatusCode::Ok,
        StatusCode::Partial,
        StatusCode::BadRequest,
        StatusCode::Unauthorized,
        StatusCode::Forbidden,
        StatusCode::NotFound,
        StatusCode::PayloadTooLarge,
        StatusCode::TooManyRequests,
        StatusCode::Internal,
        StatusCode::Unavailable,
    ];

    #[test]
    fn round_trip_and_reasons() {
        for code in ALL {
            assert_eq!(StatusCode::from_u16(code.as_u16()), Some(code));
            assert!(!code.reason().is_empty());
        }
        assert_eq!(StatusCode::from_u16(201), None);
        assert_eq!(StatusCode::PayloadTooLarge.as_u16(), 413);
        assert_eq!(StatusCode::Internal.reason(), "Internal Server Error");
        assert_eq!(u16::from(StatusCode::Partial), 206);
    }

    #[test]
    fn classes() {
        assert_eq!(classify(200), "success");
        assert_eq!(classify(299), "success");
        assert_eq!(classify(404), "client_error");
        assert_eq!(classify(503), "server_error");
        assert_eq!(classify(0), "client_error");
        assert_eq!(classify(100), "client_error");
        assert_eq!(classify(302), "client_error");
        assert_eq!(classify(u16::MAX), "client_error");
    }
}
