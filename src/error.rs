//! The error type of every fallible ps3rt call.
//!
//! Each variant names what was wrong in terms a user can act on (which file, which field, which
//! argument); the C ABI maps the variants to status codes and the CLI to exit codes.

use std::path::PathBuf;

/// Result alias used throughout ps3rt.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ps3rt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A model package is malformed, inconsistent or corrupted.
    #[error("model package {package}: {file}: {reason}")]
    Package {
        /// The package (directory or "embedded:<name>").
        package: String,
        /// The file inside the package the problem was found in.
        file: String,
        /// What is wrong.
        reason: String,
    },

    /// A frame or tensor handed to the encoder does not describe valid pixels.
    #[error("invalid frame: {0}")]
    InvalidFrame(String),

    /// An option or argument is out of range or inconsistent with the model.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An input file (image, tensor) could not be decoded.
    #[error("input {}: {reason}", path.display())]
    Input {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The inference backend failed to load a graph or to run it.
    #[error("backend {backend}: {stage}: {message}")]
    Backend {
        /// Which backend ("tract", "tensorrt").
        backend: &'static str,
        /// Which graph or step ("lowres", "hrsel", "hrenc", "load").
        stage: String,
        /// The backend's own message, with its cause chain.
        message: String,
    },

    /// The backend produced values that cannot be used (NaN or infinite scores or features).
    #[error("non-finite values in {0}")]
    NonFinite(String),
}

impl Error {
    pub(crate) fn package(package: &str, file: &str, reason: impl Into<String>) -> Self {
        Error::Package {
            package: package.to_string(),
            file: file.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
