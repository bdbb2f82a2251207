//! Where the generator's messages go. systemd runs generators before
//! syslog exists and keeps their output to itself (systemd.generator(7)):
//! a message on stderr reaches at best the console. So each message also
//! goes to the journal (its native socket, with `SYSLOG_IDENTIFIER=
//! nixarr-units-generator`, so `journalctl -b -t nixarr-units-generator`
//! finds it) or, when journald does not run yet (early boot), to the
//! kernel log, which journald reads later.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

pub const IDENTIFIER: &str = "nixarr-units-generator";

/// A `MakeWriter` for tracing: one journal entry per event, and the same
/// line on stderr.
#[derive(Debug, Clone)]
pub struct GeneratorLog {
    pub journal_socket: PathBuf,
    pub kmsg: PathBuf,
}

impl Default for GeneratorLog {
    fn default() -> Self {
        GeneratorLog {
            journal_socket: PathBuf::from("/run/systemd/journal/socket"),
            kmsg: PathBuf::from("/dev/kmsg"),
        }
    }
}

/// syslog priority of a tracing level.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One event's text, sent when the formatter drops it.
pub struct Entry {
    log: GeneratorLog,
    priority: u8,
    buf: Vec<u8>,
}

impl Write for Entry {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let _ = std::io::stderr().write_all(&self.buf);
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        if send_journal(&self.log, self.priority, text).is_err() {
            let _ = send_kmsg(&self.log, self.priority, text);
        }
    }
}

/// The journal's native protocol: `KEY=value` lines, and for a value with
/// a newline `KEY\n`, its length as 64-bit little endian, the bytes, `\n`.
fn journal_datagram(priority: u8, text: &str) -> Vec<u8> {
    let mut d = format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={IDENTIFIER}\n").into_bytes();
    if text.contains('\n') {
        d.extend_from_slice(b"MESSAGE\n");
        d.extend_from_slice(&(text.len() as u64).to_le_bytes());
        d.extend_from_slice(text.as_bytes());
        d.push(b'\n');
    } else {
        d.extend_from_slice(format!("MESSAGE={text}\n").as_bytes());
    }
    d
}

fn send_journal(log: &GeneratorLog, priority: u8, text: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.send_to(&journal_datagram(priority, text), &log.journal_socket)?;
    Ok(())
}

fn send_kmsg(log: &GeneratorLog, priority: u8, text: &str) -> std::io::Result<()> {
    let mut kmsg = std::fs::OpenOptions::new().write(true).open(&log.kmsg)?;
    for line in text.lines() {
        // One write per record; the kernel splits nothing.
        kmsg.write_all(
            format!("<{priority}>{IDENTIFIER}[{}]: {line}\n", std::process::id()).as_bytes(),
        )?;
    }
    Ok(())
}

impl<'a> MakeWriter<'a> for GeneratorLog {
    type Writer = Entry;
    fn make_writer(&'a self) -> Entry {
        Entry {
            log: self.clone(),
            priority: 6,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Entry {
        Entry {
            log: self.clone(),
            priority: priority(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reaches_the_journal_socket_with_priority_and_identifier() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        let log = GeneratorLog {
            journal_socket: path,
            kmsg: t.path().join("kmsg"),
        };
        let meta = tracing::Level::ERROR;
        {
            let mut e = Entry {
                log: log.clone(),
                priority: priority(&meta),
                buf: Vec::new(),
            };
            e.write_all(b"ERROR x.json: services.x.app: unknown app\n")
                .unwrap();
        }
        let mut buf = [0u8; 512];
        let n = journal.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "PRIORITY=3\nSYSLOG_IDENTIFIER=nixarr-units-generator\n\
             MESSAGE=ERROR x.json: services.x.app: unknown app\n"
        );
        assert!(!t.path().join("kmsg").exists());
    }

    #[test]
    fn without_journald_the_kernel_log_gets_it() {
        let t = tempfile::tempdir().unwrap();
        let kmsg = t.path().join("kmsg");
        std::fs::write(&kmsg, "").unwrap();
        let log = GeneratorLog {
            journal_socket: t.path().join("no-socket"),
            kmsg: kmsg.clone(),
        };
        drop(Entry {
            log,
            priority: 4,
            buf: b"WARN a\nb\n".to_vec(),
        });
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(&kmsg).unwrap(),
            format!(
                "<4>nixarr-units-generator[{pid}]: WARN a\n<4>nixarr-units-generator[{pid}]: b\n"
            )
        );
    }

    #[test]
    fn a_multi_line_message_uses_the_binary_form() {
        let d = journal_datagram(3, "a\nb");
        assert!(d.ends_with(b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n"));
    }
}
