//! What the figures were taken on.

use std::fmt;

/// The machine and its load.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Online CPUs (`nproc`).
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub model: String,
    /// MemTotal, MiB.
    pub ram_mib: u64,
    /// `uname -r`.
    pub kernel: String,
    /// /proc/loadavg: 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The 1-, 5- and 15-minute load averages.
pub fn load() -> [f64; 3] {
    let text = read("/proc/loadavg");
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

/// Describes this machine now.
pub fn describe() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let ram_mib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        model,
        ram_mib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        load: load(),
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPUs ({}), {} MiB RAM, Linux {}, load average {:.2} {:.2} {:.2}",
            self.cpus,
            self.model,
            self.ram_mib,
            self.kernel,
            self.load[0],
            self.load[1],
            self.load[2]
        )
    }
}
