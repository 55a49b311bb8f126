//! Progress on stderr: one line rewritten in place on a terminal, plain lines (only when the text
//! changes) otherwise, so logs of CI runs stay readable.

use std::io::{IsTerminal, Write};

pub struct Progress {
    tty: bool,
    last: String,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
            quiet,
        }
    }

    /// Shows `msg` as the current state.
    pub fn set(&mut self, msg: &str) {
        if self.quiet || msg == self.last {
            return;
        }
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[K{msg}");
        } else {
            let _ = writeln!(e, "{msg}");
        }
        let _ = e.flush();
        self.last = msg.to_owned();
    }

    /// A line that stays (a finished step).
    pub fn done(&mut self, msg: &str) {
        if self.quiet {
            return;
        }
        let mut e = std::io::stderr();
        if self.tty {
            let _ = writeln!(e, "\r\x1b[K{msg}");
        } else {
            let _ = writeln!(e, "{msg}");
        }
        self.last.clear();
    }
}
