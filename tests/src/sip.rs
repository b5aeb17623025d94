//! Real SIP peers for end-to-end tests (baresip, SIPp, Kamailio on 127.0.0.1).
//!
//! A [`Lab`] is a scratch folder; [`Kamailio`], [`Baresip`] and [`Sipp`]
//! start the real programs in it with generated configurations, on free
//! loopback ports (a process-wide allocator hands out distinct ports, each
//! checked free before use, so tests run in parallel). Every program runs
//! under `timeout` in its own process group; dropping its handle sends
//! SIGTERM, waits up to 2 s, then SIGKILLs the group. Every wait has a
//! timeout and fails naming what it waited for, with the program's log.
//!
//! When the lab's test panics the folder is kept and its path printed.

use std::{
    fs,
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// The programs the telephony tests need, with their Debian packages.
pub const TOOLS: [(&str, &str); 3] = [
    ("baresip", "baresip-core"),
    ("sipp", "sip-tester"),
    ("kamailio", "kamailio"),
];

/// Finds a program on `PATH` (and in /usr/sbin, where kamailio lives).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// True when baresip, sipp and kamailio are installed. Otherwise: with `CI`
/// set, panics (a CI machine must run these tests); without it prints
/// "skipped: …" and returns false.
pub fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(bin, _)| *bin)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: skipped: install baresip-core sip-tester kamailio (missing: {})",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg} — CI is set, so a missing telephony tool is a failure");
    }
    // Straight to the terminal, past the test harness's output capture.
    let _ = writeln!(std::io::stderr(), "{msg}");
    false
}

// ------------------------------------------------------------------ ports

/// Loopback ports for fixed-port programs live here; baresip's RTP uses
/// [`RTP_RANGE`] and the kernel's ephemeral range starts above.
const PORT_RANGE: (u32, u32) = (20_000, 32_000);
/// RTP ports of every baresip started by the lab (baresip picks free ones).
pub const RTP_RANGE: (u16, u16) = (10_000, 19_998);

static NEXT_PORT: AtomicU32 = AtomicU32::new(0);
static PORT_LOCK: Mutex<()> = Mutex::new(());

fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok()
}

/// `n` consecutive loopback ports free for TCP and UDP, never handed out
/// before by this process. Starts at an offset derived from the process id,
/// so parallel test processes rarely meet.
pub fn free_ports(n: u16) -> u16 {
    let _guard = PORT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let span = PORT_RANGE.1 - PORT_RANGE.0;
    if NEXT_PORT.load(Ordering::Relaxed) == 0 {
        let start = (std::process::id() * 7919) % span;
        NEXT_PORT.store(start + 1, Ordering::Relaxed);
    }
    for _ in 0..span {
        let off = NEXT_PORT.fetch_add(u32::from(n), Ordering::Relaxed) % span;
        let base = PORT_RANGE.0 + off;
        if base + u32::from(n) >= PORT_RANGE.1 {
            continue;
        }
        let base = base as u16;
        if (0..n).all(|i| port_free(base + i)) {
            return base;
        }
    }
    panic!("no {n} free consecutive loopback ports in {PORT_RANGE:?}");
}

/// True when something listens on 127.0.0.1:`port` (TCP LISTEN or a bound
/// UDP socket), read from /proc/net — probing by connecting would take
/// ctrl_tcp's only connection slot away from the connector.
pub fn listening(port: u16, udp: bool) -> bool {
    let (file, state) = if udp {
        ("/proc/net/udp", "07")
    } else {
        ("/proc/net/tcp", "0A")
    };
    let Ok(text) = fs::read_to_string(file) else {
        return false;
    };
    let want = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && (f[1] == want || f[1] == any) && f[3] == state
    })
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ------------------------------------------------------------------ processes

/// A program started by the lab, stopped by its process id on drop.
pub struct Proc {
    name: String,
    child: Option<Child>,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

/// Sends `signal` to a process, or to a process group with a negative id.
/// Errors (the process already ended) are ignored.
fn signal(target: i64, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Proc {
    /// Starts `program args` under `timeout --kill-after=2 LIFETIME` (a last
    /// resort should the test process die) in a new process group, with
    /// stdin from /dev/null and output to `log`.
    pub fn spawn(name: &str, program: &str, args: &[String], cwd: &Path, log: PathBuf) -> Proc {
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new("timeout")
            .args(["--kill-after=2", "600", program])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The process id (of `timeout`, the group leader).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The program's output so far (last 6000 bytes).
    pub fn log_text(&self) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let from = text.len().saturating_sub(6000);
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// Its exit status, if it ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for it to end.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_for(timeout, || {
            status = self.try_status();
            status.is_some()
        });
        status
    }

    /// SIGKILLs the whole group at once (a crash, for tests).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(-i64::from(c.id()), "KILL");
            let _ = c.wait();
        }
    }

    /// SIGTERM (which `timeout` passes on), up to 2 s, then SIGKILL to the
    /// group.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if c.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(i64::from(c.id()), "TERM");
        let ended = wait_for(Duration::from_secs(2), || {
            c.try_wait().ok().flatten().is_some()
        });
        if !ended {
            eprintln!("{} did not stop within 2 s of SIGTERM; SIGKILL", self.name);
            signal(-i64::from(c.id()), "KILL");
        }
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ lab

/// A scratch folder for one test's SIP peers.
pub struct Lab {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    /// A new scratch folder.
    pub fn new() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("cti-sip-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_path_buf();
        Lab {
            dir: Some(dir),
            path,
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the folder after the lab is dropped; returns its path.
    pub fn keep(mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            return d.keep();
        }
        self.path.clone()
    }

    /// A file or folder inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("SIP lab kept for inspection: {}", kept.display());
            }
        }
    }
}

// ------------------------------------------------------------------ SIP probe

static PROBE_SEQ: AtomicU32 = AtomicU32::new(1);

/// Sends a SIP OPTIONS for `sip:user@127.0.0.1:port` and returns the status
/// code of the final reply, or `None` when nothing answered within `wait`.
pub fn options(user: &str, port: u16, wait: Duration) -> Option<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    let lport = sock.local_addr().ok()?.port();
    let n = PROBE_SEQ.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{}x{n}", std::process::id());
    let msg = format!(
        "OPTIONS sip:{user}@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{tag}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1:{lport}>;tag={tag}\r\n\
         To: <sip:{user}@127.0.0.1:{port}>\r\n\
         Call-ID: probe-{tag}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:probe@127.0.0.1:{lport}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).ok()?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).ok()?;
        let n = sock.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())?;
        if code >= 200 {
            return Some(code);
        }
    }
}

// ------------------------------------------------------------------ Kamailio

/// A Kamailio registrar/proxy on 127.0.0.1 (in-memory location table, no
/// auth, record-routing INVITEs).
pub struct Kamailio {
    /// Its UDP port.
    pub port: u16,
    /// The process.
    pub proc: Proc,
}

const KAMAILIO_CFG: &str = r#"#!KAMAILIO
# Loopback registrar + proxy for tests (kamailio 5.6): in-memory location, no auth.
debug=2
log_stderror=yes
fork=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
dns=no
rev_dns=no
use_dns_cache=no

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"

modparam("usrloc", "db_mode", 0)
modparam("rr", "append_fromtag", 0)
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 60000)

request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (!sanity_check("1511", "7")) { xlog("L_WARN", "malformed SIP from $si:$sp\n"); exit; }
	if (is_method("CANCEL")) {
		if (t_check_trans()) { t_relay(); }
		exit;
	}
	if (has_totag()) {
		if (loose_route()) { t_relay(); exit; }
		if (is_method("ACK")) {
			if (t_check_trans()) { t_relay(); }
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	t_check_trans();
	if (is_method("REGISTER")) {
		if (!save("location")) { sl_reply_error(); }
		exit;
	}
	if (is_method("INVITE|SUBSCRIBE|REFER")) { record_route(); }
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	if (!t_relay()) { sl_reply_error(); }
	exit;
}
"#;

impl Kamailio {
    /// Starts Kamailio and waits until it answers SIP.
    pub fn start(lab: &Lab) -> Kamailio {
        let port = free_ports(1);
        let cfg = lab.file("kamailio.cfg");
        fs::write(&cfg, KAMAILIO_CFG.replace("{port}", &port.to_string())).expect("write cfg");
        let args: Vec<String> = [
            "-f",
            &cfg.display().to_string(),
            "-DD",
            "-E",
            "-m",
            "32",
            "-M",
            "4",
            "-P",
            &lab.file("kamailio.pid").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = Proc::spawn(
            "kamailio",
            "kamailio",
            &args,
            lab.path(),
            lab.file("kamailio.log"),
        );
        let k = Kamailio { port, proc };
        let up = wait_for(Duration::from_secs(10), || {
            options("ping", port, Duration::from_millis(100)).is_some()
        });
        assert!(
            up,
            "kamailio did not answer SIP on 127.0.0.1:{port} within 10 s\n--- kamailio log ---\n{}",
            k.proc.log_text()
        );
        k
    }

    /// `127.0.0.1:port`.
    pub fn domain(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

// ------------------------------------------------------------------ baresip

/// How to configure a baresip agent.
#[derive(Debug, Clone)]
pub struct BaresipOpts {
    /// The account's user (`1001`).
    pub user: String,
    /// Register at this Kamailio port (else: a local account, no registration).
    pub registrar: Option<u16>,
    /// `manual` (the desktop answers) or `auto` (baresip answers by itself).
    pub answermode: String,
    /// `call_max_calls`.
    pub max_calls: u32,
    /// Run with `-v` (logs every ctrl_tcp command).
    pub verbose: bool,
}

impl BaresipOpts {
    /// A manual-answer agent `user`, registered at `registrar` if given.
    pub fn agent(user: &str, registrar: Option<&Kamailio>) -> Self {
        Self {
            user: user.to_owned(),
            registrar: registrar.map(|k| k.port),
            answermode: "manual".into(),
            max_calls: 256,
            verbose: true,
        }
    }
}

/// A headless baresip (ausine source, aubridge sink, no sound card) with
/// ctrl_tcp on 127.0.0.1.
pub struct Baresip {
    /// SIP port (UDP and TCP; baresip also binds TCP port+1).
    pub sip_port: u16,
    /// ctrl_tcp port.
    pub ctrl_port: u16,
    /// The options it was started with.
    pub opts: BaresipOpts,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl Baresip {
    /// Writes the configuration and starts baresip; waits until ctrl_tcp
    /// listens (and, with a registrar, until Kamailio routes to it).
    pub fn start(lab: &Lab, name: &str, opts: BaresipOpts) -> Baresip {
        let sip_port = free_ports(2);
        let ctrl_port = free_ports(1);
        let dir = lab.file(name);
        fs::create_dir_all(&dir).expect("mkdir");
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             dns_server\t\t127.0.0.1:53\n\
             call_local_timeout\t120\n\
             call_max_calls\t\t{max}\n\
             audio_player\t\taubridge,null0\n\
             audio_alert\t\taubridge,null0\n\
             audio_source\t\tausine,440\n\
             ausrc_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             auplay_srate\t\t48000\n\
             auplay_channels\t\t1\n\
             audio_buffer\t\t20-160\n\
             audio_level\t\tno\n\
             rtp_ports\t\t{rtp0}-{rtp1}\n\
             rtcp_mux\t\tno\n\
             jitter_buffer_delay\t5-10\n\
             rtp_stats\t\tno\n\
             statmode_default\toff\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\taubridge.so\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n",
            max = opts.max_calls,
            rtp0 = RTP_RANGE.0,
            rtp1 = RTP_RANGE.1,
        );
        fs::write(dir.join("config"), config).expect("write config");
        let account = match opts.registrar {
            Some(k) => format!(
                "<sip:{}@127.0.0.1:{k}>;regint=60;answermode={}\n",
                opts.user, opts.answermode
            ),
            None => format!(
                "<sip:{}@127.0.0.1:{sip_port}>;regint=0;answermode={}\n",
                opts.user, opts.answermode
            ),
        };
        fs::write(dir.join("accounts"), account).expect("write accounts");
        fs::write(dir.join("contacts"), "").expect("write contacts");
        let mut b = Baresip {
            sip_port,
            ctrl_port,
            opts,
            dir,
            proc: None,
            starts: 0,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        self.starts += 1;
        let mut args = vec!["-f".to_owned(), self.dir.display().to_string()];
        if self.opts.verbose {
            args.push("-v".to_owned());
        }
        let log = self.dir.join(format!("baresip-{}.log", self.starts));
        let proc = Proc::spawn("baresip", "baresip", &args, &self.dir, log);
        self.proc = Some(proc);
        let port = self.ctrl_port;
        let up = wait_for(Duration::from_secs(10), || listening(port, false));
        assert!(
            up,
            "baresip's ctrl_tcp did not listen on 127.0.0.1:{port} within 10 s\n--- baresip log ---\n{}",
            self.log_text()
        );
        if self.opts.registrar.is_some() {
            self.wait_registered();
        }
    }

    /// Waits until Kamailio routes `sip:user@` to this baresip (an OPTIONS
    /// through the proxy is answered 200 by baresip itself).
    pub fn wait_registered(&self) {
        let Some(k) = self.opts.registrar else { return };
        let user = self.opts.user.clone();
        let mut last = None;
        let ok = wait_for(Duration::from_secs(10), || {
            last = options(&user, k, Duration::from_millis(200));
            last == Some(200)
        });
        assert!(
            ok,
            "baresip {user} did not become reachable through kamailio 127.0.0.1:{k} within 10 s (last reply {last:?})\n--- baresip log ---\n{}",
            self.log_text()
        );
    }

    /// The account's address: through the registrar, or direct.
    pub fn aor(&self) -> String {
        let port = self.opts.registrar.unwrap_or(self.sip_port);
        format!("sip:{}@127.0.0.1:{port}", self.opts.user)
    }

    /// The SIP `host:port` that reaches this baresip directly.
    pub fn direct(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }

    /// The current run's log (last 6000 bytes).
    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Kills baresip with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts baresip again with the same configuration and ports.
    pub fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
        let sip = self.sip_port;
        let free = wait_for(Duration::from_secs(5), || {
            !listening(sip, true) && !listening(sip, false)
        });
        assert!(free, "baresip's SIP port {sip} is still bound");
        self.launch();
    }

    /// A client for its ctrl_tcp (takes ctrl_tcp's only connection slot: do
    /// not use it on a baresip a connector drives).
    pub fn ctrl(&self) -> Ctrl {
        Ctrl::connect(self.ctrl_port)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

// ------------------------------------------------------------------ ctrl_tcp client

/// A small blocking ctrl_tcp client for baresips the test drives itself.
pub struct Ctrl {
    stream: TcpStream,
    rx: mpsc::Receiver<Value>,
    pending: Vec<Value>,
    /// Every event received so far.
    pub events: Vec<Value>,
    n: u64,
}

fn netstring(payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", payload.len()).into_bytes();
    v.extend_from_slice(payload);
    v.push(b',');
    v
}

impl Ctrl {
    /// Connects (retrying up to 5 s).
    pub fn connect(port: u16) -> Ctrl {
        let mut stream = None;
        wait_for(Duration::from_secs(5), || {
            stream = TcpStream::connect(("127.0.0.1", port)).ok();
            stream.is_some()
        });
        let stream = stream.unwrap_or_else(|| panic!("cannot connect to ctrl_tcp on {port}"));
        stream.set_nodelay(true).expect("nodelay");
        let mut rd = stream.try_clone().expect("clone");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            loop {
                let n = match rd.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(colon) = buf.iter().position(|&b| b == b':') {
                    let Some(len) = std::str::from_utf8(&buf[..colon])
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                    else {
                        return;
                    };
                    if buf.len() < colon + 1 + len + 1 {
                        break;
                    }
                    let frame: Vec<u8> = buf[colon + 1..colon + 1 + len].to_vec();
                    buf.drain(..colon + len + 2);
                    if let Ok(v) = serde_json::from_slice::<Value>(&frame) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ctrl {
            stream,
            rx,
            pending: Vec::new(),
            events: Vec::new(),
            n: 0,
        }
    }

    fn next(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = self.rx.recv_timeout(left).ok()?;
        if v.get("event").is_some() {
            self.events.push(v.clone());
        }
        Some(v)
    }

    /// Runs a command and returns its reply (`{"ok":…, "data":…}`).
    pub fn cmd(&mut self, command: &str, params: Option<&str>) -> Value {
        self.n += 1;
        let token = format!("t{}", self.n);
        let mut o = json!({"command": command, "token": token});
        if let Some(p) = params {
            o["params"] = Value::from(p);
        }
        self.stream
            .write_all(&netstring(o.to_string().as_bytes()))
            .expect("ctrl write");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let Some(v) = self.next(deadline) else {
                panic!("no reply to ctrl_tcp `{command}` within 5 s");
            };
            if v.get("response").is_some() && v["token"] == token.as_str() {
                return v;
            }
            self.pending.push(v);
        }
    }

    /// Waits for an event matching `pred` (kept events first).
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self
            .pending
            .iter()
            .position(|v| v.get("event").is_some() && pred(v))
        {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let Some(v) = self.next(deadline) else {
                let seen: Vec<String> = self.events.iter().map(Value::to_string).collect();
                panic!(
                    "timed out after {timeout:?} waiting for baresip event {what}\n--- events seen ---\n{}",
                    seen.join("\n")
                );
            };
            if v.get("event").is_some() && pred(&v) {
                return v;
            }
            self.pending.push(v);
        }
    }

    /// Waits for an event of `kind` (`CALL_ESTABLISHED`, …).
    pub fn wait_type(&mut self, kind: &str, timeout: Duration) -> Value {
        self.wait_event(kind, timeout, |v| v["type"] == kind)
    }
}

// ------------------------------------------------------------------ SIPp

/// The folder of the SIPp scenarios (`tests/fixtures/sip`).
pub fn scenarios() -> PathBuf {
    crate::workspace()
        .join("tests")
        .join("fixtures")
        .join("sip")
}

/// A SIPp run being prepared.
pub struct SippBuilder<'a> {
    lab: &'a Lab,
    name: String,
    scenario: Vec<String>,
    remote: Option<String>,
    args: Vec<String>,
}

impl SippBuilder<'_> {
    /// The remote `host:port` (UAC runs).
    pub fn remote(mut self, remote: &str) -> Self {
        self.remote = Some(remote.to_owned());
        self
    }

    /// The request-URI user (`-s`).
    pub fn service(self, user: &str) -> Self {
        self.arg("-s").arg(user)
    }

    /// `[key]` in the scenario becomes `value` (`-key`).
    pub fn key(self, key: &str, value: &str) -> Self {
        self.arg("-key").arg(key).arg(value)
    }

    /// Total calls, then exit (`-m`); also the concurrent-call limit.
    pub fn calls(self, n: u32) -> Self {
        self.arg("-m").arg(&n.to_string())
    }

    /// Calls per second (`-r`).
    pub fn rate(self, r: f64) -> Self {
        self.arg("-r").arg(&r.to_string())
    }

    /// Any SIPp argument.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }

    /// Starts SIPp; for a run without a remote (a UAS) waits until its port
    /// is bound.
    pub fn start(self) -> Sipp {
        let port = free_ports(1);
        let media = free_ports(4);
        let dir = self.lab.file(&format!("sipp-{}", self.name));
        fs::create_dir_all(&dir).expect("mkdir");
        let msg = dir.join("messages.log");
        let err = dir.join("errors.log");
        let mut args = self.scenario.clone();
        if let Some(r) = &self.remote {
            args.push(r.clone());
        }
        args.extend(
            [
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-mi",
                "127.0.0.1",
                "-mp",
                &media.to_string(),
                "-nostdin",
                "-trace_msg",
                "-message_file",
                &msg.display().to_string(),
                "-trace_err",
                "-error_file",
                &err.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(self.args);
        let proc = Proc::spawn(
            &format!("sipp {}", self.name),
            "sipp",
            &args,
            &dir,
            dir.join("screen.log"),
        );
        let mut s = Sipp {
            port,
            proc,
            msg,
            err,
            dir,
        };
        if self.remote.is_none() {
            let ok = wait_for(Duration::from_secs(10), || listening(port, true));
            assert!(ok, "SIPp did not bind 127.0.0.1:{port}\n{}", s.report());
        }
        s.check_alive();
        s
    }
}

/// A running SIPp.
pub struct Sipp {
    /// Its SIP port.
    pub port: u16,
    /// The process.
    pub proc: Proc,
    msg: PathBuf,
    err: PathBuf,
    /// Its working folder (trace files).
    pub dir: PathBuf,
}

/// One message from SIPp's `-trace_msg` file.
#[derive(Debug, Clone)]
pub struct SipMsg {
    /// When SIPp logged it: seconds since local midnight (microseconds).
    pub at: f64,
    /// SIPp received it (else sent it).
    pub received: bool,
    /// `INVITE sip:… SIP/2.0` or `SIP/2.0 200 OK`.
    pub first_line: String,
    /// The whole message.
    pub text: String,
}

impl SipMsg {
    /// A request of `method`.
    pub fn is_request(&self, method: &str) -> bool {
        self.first_line.starts_with(&format!("{method} "))
    }

    /// A response with `code`.
    pub fn is_response(&self, code: u16) -> bool {
        self.first_line.starts_with(&format!("SIP/2.0 {code}"))
    }

    /// The CSeq method (`INVITE`, `BYE`, …).
    pub fn cseq_method(&self) -> &str {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix("CSeq:"))
            .and_then(|v| v.split_whitespace().nth(1))
            .unwrap_or("")
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID:"))
            .map_or("", str::trim)
    }
}

impl Sipp {
    /// Prepares a run of the scenario file `tests/fixtures/sip/<file>`.
    pub fn scenario<'a>(lab: &'a Lab, name: &str, file: &str) -> SippBuilder<'a> {
        let path = scenarios().join(file);
        assert!(path.exists(), "{} is missing", path.display());
        SippBuilder {
            lab,
            name: name.to_owned(),
            scenario: vec!["-sf".into(), path.display().to_string()],
            remote: None,
            args: Vec::new(),
        }
    }

    /// Like [`Sipp::scenario`], with placeholders replaced in a copy of the
    /// file (`HOLD_MS` → `"300"`: values SIPp cannot take from `-key`).
    pub fn scenario_with<'a>(
        lab: &'a Lab,
        name: &str,
        file: &str,
        subs: &[(&str, &str)],
    ) -> SippBuilder<'a> {
        let path = scenarios().join(file);
        let mut text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (from, to) in subs {
            text = text.replace(from, to);
        }
        let copy = lab.file(&format!("{name}-{file}"));
        fs::write(&copy, text).expect("write scenario");
        SippBuilder {
            lab,
            name: name.to_owned(),
            scenario: vec!["-sf".into(), copy.display().to_string()],
            remote: None,
            args: Vec::new(),
        }
    }

    /// Prepares a run of a built-in scenario (`uas`, `uac`).
    pub fn builtin<'a>(lab: &'a Lab, name: &str, scenario: &str) -> SippBuilder<'a> {
        SippBuilder {
            lab,
            name: name.to_owned(),
            scenario: vec!["-sn".into(), scenario.into()],
            remote: None,
            args: Vec::new(),
        }
    }

    /// `sip:user@127.0.0.1:port` — this SIPp's address.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    fn check_alive(&mut self) {
        if let Some(st) = self.proc.try_status() {
            panic!("SIPp exited at once ({st})\n{}", self.report());
        }
    }

    /// Its screen output, errors and message trace (for failure messages).
    pub fn report(&self) -> String {
        let tail = |p: &Path, n: usize| {
            let t = fs::read(p).unwrap_or_default();
            String::from_utf8_lossy(&t[t.len().saturating_sub(n)..]).into_owned()
        };
        format!(
            "--- SIPp screen ({}) ---\n{}\n--- SIPp errors ---\n{}\n--- SIPp messages (tail) ---\n{}",
            self.dir.display(),
            self.proc.log_text(),
            tail(&self.err, 4000),
            tail(&self.msg, 6000)
        )
    }

    /// Waits up to `timeout` for SIPp to end; its exit code (0: every call
    /// succeeded). Panics with SIPp's output on timeout.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        match self.proc.wait(timeout) {
            Some(st) => st.code().unwrap_or(-1),
            None => panic!("SIPp did not finish within {timeout:?}\n{}", self.report()),
        }
    }

    /// Waits for SIPp to end and asserts that it succeeded (exit code 0).
    pub fn expect_success(&mut self, timeout: Duration) {
        let rc = self.wait(timeout);
        assert_eq!(rc, 0, "SIPp failed (exit code {rc})\n{}", self.report());
    }

    /// The messages SIPp sent and received so far.
    pub fn messages(&self) -> Vec<SipMsg> {
        let Ok(f) = fs::File::open(&self.msg) else {
            return Vec::new();
        };
        let mut out: Vec<SipMsg> = Vec::new();
        let mut cur: Option<SipMsg> = None;
        let mut at = 0.0;
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            if line.starts_with("-----------------------------------------------") {
                out.extend(cur.take());
                // "----… 2026-11-27 06:14:14.417320"
                at = line
                    .rsplit(' ')
                    .next()
                    .map(|hms| {
                        hms.split(':')
                            .filter_map(|x| x.parse::<f64>().ok())
                            .fold(0.0, |acc, x| acc * 60.0 + x)
                    })
                    .unwrap_or(0.0);
                continue;
            }
            if line.contains(" message received [") || line.contains(" message sent (") {
                cur = Some(SipMsg {
                    at,
                    received: line.contains("received"),
                    first_line: String::new(),
                    text: String::new(),
                });
                continue;
            }
            if let Some(m) = &mut cur {
                if m.first_line.is_empty() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    m.first_line = line.trim().to_owned();
                }
                m.text.push_str(&line);
                m.text.push('\n');
            }
        }
        out.extend(cur);
        out
    }

    /// Received messages only.
    pub fn received(&self) -> Vec<SipMsg> {
        self.messages().into_iter().filter(|m| m.received).collect()
    }
}
