//! Why flashing stopped. Every variant says what to do; none of them leaves a half-checked
//! target: checks run before the first byte is written.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// The image cannot be used (missing, corrupt, empty, ambiguous zip).
    #[error("image {}: {what}", .path.display())]
    Image { path: PathBuf, what: String },

    /// The target must not be written (mounted, the running system's disk, too small, not a
    /// file or block device).
    #[error("target {}: {what}", .path.display())]
    Target { path: PathBuf, what: String },

    /// What was read back differs from what was written.
    #[error("verification failed: the {len} bytes at offset {offset} read back differ from the image (bad card or reader?)")]
    Verify { offset: u64, len: u64 },

    /// The written image has no usable boot partition, or editing it failed.
    #[error("boot partition: {0}")]
    Boot(String),

    /// Options that contradict each other or the user's files.
    #[error("{0}")]
    Input(String),

    /// The user said no at the confirmation prompt.
    #[error("cancelled; nothing was written")]
    Cancelled,

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, FlashError>;

/// Adds what was being done to an I/O error.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FlashError {
    let context = context.into();
    move |source| FlashError::Io { context, source }
}
