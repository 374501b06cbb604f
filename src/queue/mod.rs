//! The crash-safe disk queue (work in progress).
