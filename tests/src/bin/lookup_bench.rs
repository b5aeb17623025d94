//! Contact-directory lookup latency against a directory of 1,000,000
//! contacts.
//!
//! ```sh
//! cargo run --release -p cti-e2e --bin lookup_bench
//! ```
//!
//! The directory is built once through the real import path (a generated
//! CSV → `Directory::import_csv`: one transaction, prepared statements) and
//! cached under `target/lookup-bench/`; later runs reuse it. Then it times
//! `find_by_phone` and `find_by_field` one call at a time (normalisation,
//! index lookup and reading the contact with its fields included), half of
//! them for numbers/values that exist and half for ones that do not, in
//! random order, and prints percentiles.
//!
//! Options: `--contacts N` (default 1000000), `--lookups N` per kind
//! (default 100000), `--db PATH`, `--rebuild`.

use std::{
    fmt::Write as _,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use cti_host::directory::Directory;

/// splitmix64: a small, fast, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The subscriber part of contact `i`'s number: a permutation of 0..10^7
/// (7919 is prime to 10^7), so numbers are distinct and scattered. Indexes
/// at or past the contact count give numbers nobody has.
fn subscriber(i: u64) -> u64 {
    (i * 7919 + 1_234_567) % 10_000_000
}

/// Contact `i`'s number, written the way `style` says.
fn number(i: u64, style: u64) -> String {
    let n = subscriber(i);
    let (exch, line) = (200 + n / 10_000 % 800, n % 10_000);
    // Area code 425 plus a leading digit from the permutation keeps the
    // 10-digit NANP shape.
    let area = 425 + (n / 8_000_000) * 100;
    match style % 4 {
        0 => format!("+1 ({area}) {exch}-{line:04}"),
        1 => format!("{area}.{exch}.{line:04}"),
        2 => format!("1-{area}-{exch}-{line:04}"),
        _ => format!("sip:+1{area}{exch}{line:04}@pbx.example.com;user=phone"),
    }
}

fn account(i: u64) -> String {
    format!("A-{i:08}")
}

struct Options {
    contacts: u64,
    lookups: usize,
    db: PathBuf,
    rebuild: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        contacts: 1_000_000,
        lookups: 100_000,
        db: PathBuf::new(),
        rebuild: false,
    };
    let mut db = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--contacts" => {
                o.contacts = value("--contacts")?
                    .parse()
                    .map_err(|e| format!("--contacts: {e}"))?
            }
            "--lookups" => {
                o.lookups = value("--lookups")?
                    .parse()
                    .map_err(|e| format!("--lookups: {e}"))?
            }
            "--db" => db = Some(PathBuf::from(value("--db")?)),
            "--rebuild" => o.rebuild = true,
            "-h" | "--help" => {
                return Err(
                    "usage: lookup_bench [--contacts N] [--lookups N] [--db PATH] [--rebuild]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if o.contacts == 0 || o.contacts > 5_000_000 {
        return Err("--contacts must be 1 to 5000000".into());
    }
    o.db = db.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target
            .join("lookup-bench")
            .join(format!("contacts-{}.db", o.contacts))
    });
    Ok(o)
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// The cached directory if it is complete, otherwise a new one.
fn directory(o: &Options) -> Result<Directory, String> {
    if !o.rebuild && o.db.exists() {
        match Directory::open(&o.db, "1").and_then(|d| d.count().map(|n| (d, n))) {
            Ok((d, n)) if n == o.contacts => {
                println!(
                    "directory: {} ({} contacts, cached; --rebuild to build it again)",
                    o.db.display(),
                    n
                );
                return Ok(d);
            }
            Ok((_, n)) => println!("cached directory has {n} contacts; rebuilding"),
            Err(e) => println!("cached directory unusable ({e}); rebuilding"),
        }
    }
    remove_db(&o.db);
    if let Some(dir) = o.db.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let csv = o.db.with_extension("csv");
    let t = Instant::now();
    {
        let file = std::fs::File::create(&csv).map_err(|e| format!("{}: {e}", csv.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let werr = |e: std::io::Error| format!("{}: {e}", csv.display());
        writeln!(w, "id,name,phone,account,email").map_err(werr)?;
        for i in 0..o.contacts {
            writeln!(
                w,
                "c{i:07},\"Contact {i}, Example\",{},{},user{i}@example.com",
                number(i, i),
                account(i)
            )
            .map_err(werr)?;
        }
        w.flush().map_err(werr)?;
    }
    let generated = t.elapsed();
    let mut d = Directory::open(&o.db, "1").map_err(|e| e.to_string())?;
    let t = Instant::now();
    let report = d.import_csv(&csv).map_err(|e| e.to_string())?;
    let imported = t.elapsed();
    let _ = std::fs::remove_file(&csv);
    if report.imported as u64 != o.contacts || !report.skipped.is_empty() {
        return Err(format!(
            "import: {} imported, skipped {:?}",
            report.imported,
            &report.skipped[..report.skipped.len().min(5)]
        ));
    }
    println!(
        "directory: {} built: CSV written in {:.1} s, imported in {:.1} s ({:.0} contacts/s)",
        o.db.display(),
        generated.as_secs_f64(),
        imported.as_secs_f64(),
        o.contacts as f64 / imported.as_secs_f64()
    );
    Ok(d)
}

/// Latency figures of one kind of lookup.
struct Stats {
    name: &'static str,
    times: Vec<Duration>,
    found: usize,
}

impl Stats {
    fn row(&mut self) -> String {
        self.times.sort_unstable();
        let n = self.times.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            us(self.times[i])
        };
        let mean = self.times.iter().sum::<Duration>() / n.max(1) as u32;
        format!(
            "{:<12} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            self.name,
            n,
            self.found,
            us(mean),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999),
            us(self.times[n - 1]),
        )
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let d = match directory(&o) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    drop(d);
    // Time a cold open as the desktop does it at start.
    let t = Instant::now();
    let d = match Directory::open(&o.db, "1") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let opened = t.elapsed();
    let size = std::fs::metadata(&o.db).map(|m| m.len()).unwrap_or(0);

    let mut rng = Rng(0x5EED);
    // (kind, index): kinds 0 phone hit, 1 phone miss, 2 field hit, 3 field miss.
    let mut plan: Vec<(u8, u64)> = Vec::with_capacity(o.lookups * 2);
    for k in 0..o.lookups * 2 {
        let phone = k % 2 == 0;
        let hit = rng.below(2) == 0;
        let i = if hit {
            rng.below(o.contacts)
        } else {
            o.contacts + rng.below(10_000_000 - o.contacts.min(9_999_999))
        };
        plan.push((u8::from(!phone) * 2 + u8::from(!hit), i));
    }
    let mut stats = ["phone hit", "phone miss", "field hit", "field miss"].map(|name| Stats {
        name,
        times: Vec::with_capacity(o.lookups),
        found: 0,
    });
    // Warm the page cache as a running desktop's would be.
    let mut warm = Rng(0x3A7E);
    for k in 0..2_000u64 {
        let _ = lookup(&d, (k % 4) as u8, warm.below(o.contacts));
    }
    let t = Instant::now();
    for &(kind, i) in &plan {
        let t0 = Instant::now();
        let found = match lookup(&d, kind, i) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        let s = &mut stats[kind as usize];
        s.times.push(t0.elapsed());
        s.found += usize::from(found > 0);
        let expect_hit = kind % 2 == 0;
        if (found > 0) != expect_hit {
            eprintln!(
                "lookup kind {kind} of index {i}: found {found}, expected a hit: {expect_hit}"
            );
            return ExitCode::from(1);
        }
    }
    let looked = t.elapsed();
    let total = plan.len();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} contacts, {:.0} MiB; open {:.1} ms; {} lookups in {:.2} s ({:.0}/s, one thread)\n",
        o.contacts,
        size as f64 / (1 << 20) as f64,
        opened.as_secs_f64() * 1e3,
        total,
        looked.as_secs_f64(),
        total as f64 / looked.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "lookup", "count", "found", "mean µs", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    for s in &mut stats {
        let _ = writeln!(out, "{}", s.row());
    }
    let _ = writeln!(
        out,
        "\nphone: find_by_phone(raw number in 4 formats incl. sip: URI, limit 10); field: find_by_field(\"account\", value, limit 10)"
    );
    let _ = write!(
        out,
        "total run time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{out}");
    ExitCode::SUCCESS
}

/// One lookup; returns how many contacts it found.
fn lookup(d: &Directory, kind: u8, i: u64) -> Result<usize, String> {
    let found = if kind < 2 {
        d.find_by_phone(&number(i, i / 7), 10)
    } else {
        d.find_by_field("account", &account(i), 10)
    };
    found.map(|v| v.len()).map_err(|e| e.to_string())
}
