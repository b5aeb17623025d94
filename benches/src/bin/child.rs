//! The out-of-process plugin of the JSON-pipe path: reads one desktop event
//! per line of stdin, parses it as JSON, and answers `ok` on stdout for
//! every empty line (the proxy's request for an acknowledgement). Exits at
//! the end of its input; exit code 1 if a line was not valid JSON.

use std::io::{BufRead, BufWriter, Write};

fn main() {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut events = 0u64;
    let mut bad = 0u64;
    let mut digits = 0u64;
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            if out.write_all(b"ok\n").and_then(|()| out.flush()).is_err() {
                break;
            }
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => {
                events += 1;
                // Touch the event like a plugin would.
                if v.get("event").and_then(serde_json::Value::as_str) == Some("DigitsGenerated") {
                    digits += 1;
                }
            }
            Err(_) => bad += 1,
        }
    }
    let _ = out.flush();
    if bad > 0 {
        eprintln!(
            "cti-bench-child: {bad} bad lines of {} ({digits} digits)",
            events + bad
        );
        std::process::exit(1);
    }
}
