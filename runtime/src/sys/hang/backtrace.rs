//! The backtrace of a hung corral worker's event loop: the raw [`HangRecord`] its signal
//! handler writes to the hang pipe, read here and named ([`symbols`](super::symbols)) from the
//! worker's `/proc/PID/maps` while the worker is still alive (the kill comes after the
//! diagnosis).

use std::fmt::Write as _;

use corral_protocol::hang_record::{HEADER_BYTES, HangRecord, HangRecordError, MAX_RECORD_BYTES};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::symbols::Symbols;

/// Reads one record from `pipe`: the header, then as many bytes as it announces. The worker
/// writes a record in one `write` under `PIPE_BUF`, so it arrives whole. `None` when the pipe
/// ends or fails first.
pub(super) async fn read_record(pipe: &mut pipe::Receiver) -> Option<Result<HangRecord, HangRecordError>> {
    let mut buf = [0u8; MAX_RECORD_BYTES];
    pipe.read_exact(&mut buf[..HEADER_BYTES]).await.ok()?;
    let length = match HangRecord::length(&buf[..HEADER_BYTES]) {
        Ok(length) => length,
        Err(e) => return Some(Err(e)),
    };
    pipe.read_exact(&mut buf[HEADER_BYTES..length]).await.ok()?;
    Some(HangRecord::decode(&buf[..length]))
}

/// The text of `record`, its addresses named with `symbols`:
///
/// ```text
/// event-loop thread 4242 (frame-pointer walk):
///   #0  0x55d0c0a1b2c3 testbed_busy_loop+0x13 (corral-testbed+0x1b2c3)
/// return addresses found on its stack (heuristic, innermost first):
///   #0  0x55d0c0a1b400 corral_workers::run::run+0x40 (corral-testbed+0x1b400)
/// ```
pub(super) fn render(record: &HangRecord, symbols: &mut Symbols) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "event-loop thread {} (frame-pointer walk):", record.tid);
    for (i, &addr) in record.frames.iter().enumerate() {
        describe(&mut out, i, addr, symbols);
    }
    if !record.scanned.is_empty() {
        let _ = writeln!(out, "return addresses found on its stack (heuristic, innermost first):");
        for (i, &addr) in record.scanned.iter().enumerate() {
            describe(&mut out, i, addr, symbols);
        }
    }
    out
}

/// One line for the code at `addr`: `#i 0xADDR function+0xOFF (object+0xREL)`.
fn describe(out: &mut String, index: usize, addr: u64, symbols: &mut Symbols) {
    let _ = write!(out, "  #{index:<2} {addr:#x}");
    match usize::try_from(addr).ok().and_then(|a| symbols.resolve(a)) {
        Some(r) => {
            match r.function {
                Some((name, offset)) => {
                    let _ = write!(out, " {name}+{offset:#x}");
                }
                None => out.push_str(" ?"),
            }
            let _ = writeln!(out, " ({}+{:#x})", r.object, r.relative);
        }
        None => out.push_str(" ?\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_protocol::hang_record::encode;

    #[inline(never)]
    fn a_hung_function() -> usize {
        a_hung_function as *const () as usize
    }

    #[test]
    fn a_record_of_this_process_is_named() {
        let addr = std::hint::black_box(a_hung_function()) as u64 + 4;
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let len = encode(&mut buf, 77, &[addr, 8], &[addr]);
        let record = HangRecord::decode(&buf[..len]).expect("a record");
        let text = render(&record, &mut Symbols::of_process(std::process::id()));
        assert!(text.starts_with("event-loop thread 77 (frame-pointer walk):\n"), "{text}");
        assert!(text.contains("a_hung_function+0x4 ("), "{text}");
        assert!(text.contains("  #1  0x8 ?\n"), "{text}");
        assert!(text.contains("return addresses found on its stack"), "{text}");
    }

    #[tokio::test]
    async fn a_record_is_read_whole_from_a_pipe_and_a_foreign_one_refused() {
        use tokio::io::AsyncWriteExt;
        let (mut tx, mut rx) = pipe::pipe().expect("a pipe");
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let len = encode(&mut buf, 5, &[1, 2, 3], &[4]);
        tx.write_all(&buf[..len]).await.expect("room in the pipe");
        let record = read_record(&mut rx).await.expect("a record").expect("well formed");
        assert_eq!(record, HangRecord { tid: 5, frames: vec![1, 2, 3], scanned: vec![4] });
        tx.write_all(&[0u8; HEADER_BYTES]).await.expect("room in the pipe");
        assert_eq!(read_record(&mut rx).await, Some(Err(HangRecordError::BadMagic)));
        drop(tx);
        assert_eq!(read_record(&mut rx).await, None);
    }
}
