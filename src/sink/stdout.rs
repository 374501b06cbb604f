//! The stdout sink: each event as one JSON line, so a first run shows
//! something and `herald run | jq` works.

use std::io::Write;

use super::SendError;

/// Writes events to standard output.
pub struct StdoutSink {
    buffer: Vec<u8>,
}

impl StdoutSink {
    /// A sink on this process's standard output.
    pub fn new() -> Self {
        StdoutSink { buffer: Vec::new() }
    }

    /// Writes the batch, one event per line, and flushes.
    ///
    /// # Errors
    /// [`SendError::Io`] when stdout is closed or full.
    pub async fn send<B: AsRef<[u8]>>(&mut self, batch: &[B]) -> Result<(), SendError> {
        self.buffer.clear();
        for event in batch {
            self.buffer.extend_from_slice(event.as_ref());
            self.buffer.push(b'\n');
        }
        // One write of a few KiB to a pipe or terminal: not worth a
        // blocking-thread hop.
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buffer)?;
        out.flush()?;
        Ok(())
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}
