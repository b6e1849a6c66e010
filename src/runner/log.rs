//! The runner's log: one line per event on stderr, with a timestamp — unless
//! systemd's journal is the reader (`JOURNAL_STREAM` set), which stamps lines
//! itself. No colour either way.

use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub struct Log {
    timestamps: bool,
    tz: Tz,
}

impl Log {
    pub fn from_env(tz: Tz) -> Self {
        Log {
            timestamps: std::env::var_os("JOURNAL_STREAM").is_none_or(|v| v.is_empty()),
            tz,
        }
    }

    pub fn line(&self, message: &str) {
        if self.timestamps {
            eprintln!(
                "{} {message}",
                crate::schedule::human_instant(chrono::Utc::now(), self.tz)
            );
        } else {
            eprintln!("{message}");
        }
    }
}
