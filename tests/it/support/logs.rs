//! One log capture for the whole binary: a global tracing subscriber can be installed once per
//! process, and several tests check the gateway's logs for secrets.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every line `switchyard` logs at trace level from the first [`captured_logs`] call on, for
/// every test of the binary. Readers take windows (`since`); nothing is ever drained, so two
/// tests reading at once both see their own lines.
#[derive(Clone)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Where the capture is now: pass it to [`LogCapture::since`] later.
    pub fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The lines logged after `mark` (by any test running meanwhile, too).
    pub fn since(&self, mark: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[mark..]).into_owned()
    }

    /// The lines logged since `cursor`, which moves to the end.
    pub fn take_new(&self, cursor: &mut usize) -> String {
        let buf = self.0.lock().unwrap();
        let new = String::from_utf8_lossy(&buf[*cursor..]).into_owned();
        *cursor = buf.len();
        new
    }
}

/// Installs the capture on first use and returns it.
pub fn captured_logs() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = LogCapture(Arc::new(Mutex::new(Vec::new())));
        let sink = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter("switchyard=trace")
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init()
            .expect("the suite's log capture is the only global subscriber");
        capture
    })
}

impl Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
