//! Progress of a long command on standard error: a bar on a terminal, a plain line every few seconds
//! otherwise (a log file, a CI job), nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain reporter writes a line.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// How a command reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing at all.
    Quiet,
    /// A bar when standard error is a terminal, plain periodic lines when it is not.
    Auto,
}

/// Reports how far a command is through a known amount of work.
pub struct Progress {
    sink: Sink,
}

enum Sink {
    Quiet,
    Bar(ProgressBar),
    Plain(Plain),
}

struct Plain {
    what: String,
    unit: &'static str,
    total: u64,
    position: u64,
    started: Instant,
    last: Instant,
    every: Duration,
    lines: u64,
    out: Box<dyn Write + Send>,
}

impl Progress {
    /// A reporter that says nothing.
    pub fn quiet() -> Progress {
        Progress { sink: Sink::Quiet }
    }

    /// A reporter for `total` units of work called `unit` (e.g. "events"), announced as `what`.
    pub fn new(mode: Mode, what: &str, unit: &'static str, total: u64) -> Progress {
        match mode {
            Mode::Quiet => Progress::quiet(),
            Mode::Auto if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                let template = format!(
                    "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} {{elapsed}} elapsed, {{eta}} left"
                );
                if let Ok(style) = ProgressStyle::with_template(&template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(what.to_owned());
                Progress { sink: Sink::Bar(bar) }
            }
            Mode::Auto => Progress::plain(what, unit, total, PLAIN_INTERVAL, Box::new(std::io::stderr())),
        }
    }

    /// The plain reporter: one line to `out` at most every `every`, and one at the end if any before.
    pub fn plain(
        what: &str,
        unit: &'static str,
        total: u64,
        every: Duration,
        out: Box<dyn Write + Send>,
    ) -> Progress {
        let now = monotonic();
        Progress {
            sink: Sink::Plain(Plain {
                what: what.to_owned(),
                unit,
                total,
                position: 0,
                started: now,
                last: now,
                every,
                lines: 0,
                out,
            }),
        }
    }

    /// Changes the amount of work (a replay learns it after its first pass).
    pub fn set_total(&mut self, total: u64) {
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => bar.set_length(total),
            Sink::Plain(p) => p.total = total,
        }
    }

    /// The work done so far.
    pub fn set(&mut self, position: u64) {
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => bar.set_position(position),
            Sink::Plain(p) => {
                p.position = position;
                if p.last.elapsed() >= p.every {
                    p.last = monotonic();
                    p.line();
                }
            }
        }
    }

    /// The work is over: clears the bar, or writes the last plain line.
    pub fn finish(&mut self) {
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => bar.finish_and_clear(),
            // A command short enough to have said nothing on the way says nothing at the end either.
            Sink::Plain(p) if p.lines > 0 => p.line(),
            Sink::Plain(_) => {}
        }
        self.sink = Sink::Quiet;
    }
}

impl Plain {
    fn line(&mut self) {
        self.lines += 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        // A progress line that cannot be written is not worth failing the command for.
        let _ = writeln!(
            self.out,
            "{}",
            plain_line(&self.what, self.unit, self.position, self.total, elapsed)
        );
    }
}

/// A monotonic instant for the rate and time left shown to a person, never a decision.
#[allow(clippy::disallowed_methods)] // measuring elapsed time for a progress line is what it is for
fn monotonic() -> Instant {
    Instant::now()
}

/// One plain progress line: what, how far, how fast, how long still.
pub fn plain_line(what: &str, unit: &str, position: u64, total: u64, elapsed_secs: f64) -> String {
    let percent = if total == 0 {
        100.0
    } else {
        position as f64 * 100.0 / total as f64
    };
    let rate = if elapsed_secs > 0.0 {
        position as f64 / elapsed_secs
    } else {
        0.0
    };
    let left = if rate > 0.0 {
        format!(
            ", about {:.0} s left",
            total.saturating_sub(position) as f64 / rate
        )
    } else {
        String::new()
    };
    format!(
        "{what}: {position}/{total} {unit} ({percent:.0}%), {rate:.0} {unit}/s, {elapsed_secs:.0} s{left}"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_says_how_far_how_fast_and_how_long_still() {
        assert_eq!(
            plain_line("verify", "events", 250, 1_000, 2.0),
            "verify: 250/1000 events (25%), 125 events/s, 2 s, about 6 s left"
        );
        assert_eq!(
            plain_line("verify", "events", 0, 0, 0.0),
            "verify: 0/0 events (100%), 0 events/s, 0 s"
        );
    }

    #[test]
    fn the_plain_reporter_writes_at_most_one_line_per_interval_and_a_last_one_if_it_spoke() {
        let out = Shared::default();
        let mut p = Progress::plain(
            "replay",
            "events",
            10,
            Duration::from_secs(3600),
            Box::new(out.clone()),
        );
        for i in 1..=10 {
            p.set(i);
        }
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "", "a short command stays silent");

        let out = Shared::default();
        let mut p = Progress::plain("replay", "events", 3, Duration::ZERO, Box::new(out.clone()));
        for i in 1..=3 {
            p.set(i);
        }
        p.finish();
        p.set(3);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.lines().all(|l| l.starts_with("replay: ")), "{text}");
        assert!(
            text.lines()
                .last()
                .unwrap()
                .starts_with("replay: 3/3 events (100%)"),
            "{text}"
        );
    }

    #[test]
    fn quiet_writes_nothing() {
        let mut p = Progress::new(Mode::Quiet, "verify", "events", 5);
        p.set(5);
        p.finish();
        assert!(matches!(p.sink, Sink::Quiet));
    }
}
