//! The response headers of the two pages a browser loads from edgesense (the agent's node
//! page, the CLI's dashboard). Both serve their script as a file of its own so that a
//! Content-Security-Policy can forbid inline code; `nosniff` keeps a browser from running a
//! response as a script type it was not sent as, and `DENY` keeps the page out of frames
//! (a control under someone else's page is a click-jacking target).

use hyper::header::{
    HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};

/// The headers of an HTML page under the policy `csp`, revalidated on every load (the page
/// is embedded in the binary: an upgrade changes it behind the same URL).
pub fn html(csp: &'static str) -> [(HeaderName, &'static str); 4] {
    [
        (CACHE_CONTROL, "no-cache"),
        (CONTENT_SECURITY_POLICY, csp),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
    ]
}

/// The headers of the page's script.
pub const SCRIPT: [(HeaderName, &str); 3] = [
    (CONTENT_TYPE, "text/javascript; charset=utf-8"),
    (CACHE_CONTROL, "no-cache"),
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
];
