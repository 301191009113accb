//! The read at the floor: the owner and the reader each in a `maillond`
//! process of its own, a consented read measured beside a bare two-hop TLS
//! relay on the same stack in the same run, with each process's CPU per call
//! (from `/proc/PID/stat`), the owner's store growth and resident memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maillon_node::clock::SystemClock;
use maillon_node::config::Profile;
use maillon_node::crypto::{SpkiHash, TlsIdentity};
use maillon_node::transport::relay::{NextHop, relay_client, serve_relay_hop};
use maillon_proto::v1 as pb;

use super::{dir_bytes, percentile, read, report, temp};
use crate::client::Conn;
use crate::error::CliError;
use crate::federation::LocalFederation;

/// The section's size in the read; the relay answers as many bytes.
const PAYLOAD: u32 = 1024;

/// A child process of the bench, killed if the bench stops early.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Self, CliError> {
        let log = std::fs::File::create(log).map_err(temp)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .env("RUST_LOG", "warn")
            .spawn()
            .map_err(CliError::io(format!("starting {name}")))?;
        Ok(Self { name, child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User and system CPU time so far.
    fn cpu(&self) -> Duration {
        cpu_of(self.pid())
    }

    /// Resident memory (bytes).
    fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    /// Asks it to stop (SIGTERM) and waits up to ten seconds.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM; killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User plus system time of a process, from `/proc/PID/stat` (Linux; zero
/// elsewhere). Ticks are the kernel's USER_HZ, 100 on Linux.
fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name, in parentheses, may hold spaces: count after it.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime, fields 14 and 15 of proc(5); `rest` starts at field 3.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Resident memory of a process (bytes), from `/proc/PID/status`.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The `maillond` beside this `maillon`.
fn maillond() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(CliError::io("finding this program"))?;
    let path = exe.with_file_name("maillond");
    if path.exists() {
        Ok(path)
    } else {
        Err(CliError::Unexpected(format!(
            "{} is missing: build both binaries (`cargo build --release`), then run ./target/release/maillon bench",
            path.display()
        )))
    }
}

/// A free loopback address (bound, then released for a child to take).
fn free_addr() -> Result<std::net::SocketAddr, CliError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(CliError::io("finding a free loopback port"))
}

fn pin(s: &str) -> Result<SpkiHash, CliError> {
    s.parse()
        .map_err(|_| CliError::Unexpected(format!("bad pin {s:?}")))
}

/// Runs one relay hop in this process until it is stopped (`maillon
/// bench-relay-hop`, started by [`Floor::start`]).
pub async fn relay_hop(
    listen: std::net::SocketAddr,
    identity: &Path,
    client_pin: Option<String>,
    next: Option<(String, String)>,
) -> Result<(), CliError> {
    let identity = TlsIdentity::read(&identity.join("tls.key"), &identity.join("tls.crt"))?;
    let client_pin = client_pin.as_deref().map(pin).transpose()?;
    let next = match next {
        Some((addr, p)) => Some(NextHop {
            addr,
            pin: pin(&p)?,
        }),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(CliError::io(format!("binding {listen}")))?;
    serve_relay_hop(listener, &identity, client_pin, next)
        .await
        .map_err(|e| CliError::Unexpected(e.to_string()))
}

/// The owner and the reader as `maillond` processes, and the relay's two hops.
pub struct Floor {
    owner: Proc,
    reader: Proc,
    hops: [Proc; 2],
    relay: pb::relay_client::RelayClient<tonic::transport::Channel>,
    owner_dir: PathBuf,
    reader_dir: PathBuf,
    work: PathBuf,
}

impl Floor {
    /// Stops the owner (`ccas-rodez`) and the reader (`caf12`) in this
    /// process and starts each again as a `maillond`; starts the relay.
    pub async fn start(fed: &mut LocalFederation, work: &Path) -> Result<Self, CliError> {
        let daemon = maillond()?;
        let mut procs = Vec::new();
        for id in ["ccas-rodez", "caf12"] {
            fed.node_mut(id).stop().await;
            let dir = fed.node(id).dir.clone();
            procs.push(Proc::spawn(
                id,
                Command::new(&daemon).arg("--dir").arg(&dir),
                &work.join(format!("{id}.log")),
            )?);
            let admin = Conn::new(&Profile::read(&dir.join("admin.profile.toml"))?)?;
            ready(|| async {
                admin
                    .api()
                    .who_am_i(admin.req(pb::WhoAmIRequest {}))
                    .await
                    .is_ok()
            })
            .await?;
        }
        let (reader, owner) = (
            procs.pop().ok_or_else(|| missing("reader"))?,
            procs.pop().ok_or_else(|| missing("owner"))?,
        );

        let exe = std::env::current_exe().map_err(CliError::io("finding this program"))?;
        let mut pins = Vec::new();
        for hop in ["hop1", "hop2"] {
            let dir = work.join(hop);
            std::fs::create_dir_all(&dir).map_err(temp)?;
            let member = "bench-relay"
                .parse()
                .map_err(|source| CliError::BadArgument {
                    arg: "member",
                    source,
                })?;
            let identity = TlsIdentity::generate(&member)?;
            identity.write_new(&dir.join("tls.key"), &dir.join("tls.crt"))?;
            pins.push(identity.spki_hash()?);
        }
        let (first, last) = (free_addr()?, free_addr()?);
        let hop = |name: &'static str, listen: std::net::SocketAddr, dir: &str| {
            let mut cmd = Command::new(&exe);
            cmd.arg("bench-relay-hop")
                .arg("--listen")
                .arg(listen.to_string())
                .arg("--identity")
                .arg(work.join(dir));
            (name, cmd)
        };
        let (name, mut cmd) = hop("relay hop 2", last, "hop2");
        cmd.arg("--client-pin").arg(pins[0].to_string());
        let hop2 = Proc::spawn(name, &mut cmd, &work.join("hop2.log"))?;
        let (name, mut cmd) = hop("relay hop 1", first, "hop1");
        cmd.arg("--next")
            .arg(last.to_string())
            .arg("--next-pin")
            .arg(pins[1].to_string());
        let hop1 = Proc::spawn(name, &mut cmd, &work.join("hop1.log"))?;
        let relay = relay_client(&first.to_string(), pins[0])
            .map_err(|e| CliError::Unexpected(e.to_string()))?;
        ready(|| async { relay.clone().forward(relay_request()).await.is_ok() }).await?;
        Ok(Self {
            owner,
            reader,
            hops: [hop1, hop2],
            relay,
            owner_dir: fed.node("ccas-rodez").dir.clone(),
            reader_dir: fed.node("caf12").dir.clone(),
            work: work.to_owned(),
        })
    }

    /// Stops the processes and starts the owner and the reader again in
    /// this process, for the rest of the bench.
    pub async fn stop(self, fed: &mut LocalFederation) -> Result<(), CliError> {
        let Self {
            owner,
            reader,
            hops,
            ..
        } = self;
        owner.stop();
        reader.stop();
        for hop in hops {
            hop.stop();
        }
        for id in ["ccas-rodez", "caf12"] {
            fed.node_mut(id).start(Arc::new(SystemClock)).await?;
        }
        Ok(())
    }

    fn cpu(&self) -> [Duration; 4] {
        [
            self.owner.cpu(),
            self.reader.cpu(),
            self.hops[0].cpu(),
            self.hops[1].cpu(),
        ]
    }

    /// CPU of each process since `before`, per call.
    fn per_call(&self, before: [Duration; 4], calls: usize) -> [Duration; 4] {
        let now = self.cpu();
        std::array::from_fn(|i| now[i].saturating_sub(before[i]) / calls.max(1) as u32)
    }

    /// Bytes on disk of the owner's store and of its audit log, once sled's
    /// buffers had the time to reach its files (it flushes every 500 ms).
    async fn owner_bytes(&self) -> (u64, u64) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        (
            dir_bytes(&self.owner_dir.join("store")),
            dir_bytes(&self.owner_dir.join("audit")),
        )
    }

    /// Measures the relay, then the read, sequentially and with
    /// `concurrency` calls in flight, and prints them side by side.
    pub async fn measure(
        &self,
        caf: &Conn,
        dossier: &str,
        calls: usize,
        concurrency: usize,
    ) -> Result<(), CliError> {
        println!(
            "owner (ccas-rodez) and reader (caf12) in two maillond processes; the relay's two hops in two more"
        );
        // Warm both paths (connections, caches).
        for _ in 0..50 {
            self.relay.clone().forward(relay_request()).await?;
            read(caf, dossier).await?;
        }

        let before = self.cpu();
        let relay_seq = sequential(calls, || async {
            self.relay.clone().forward(relay_request()).await.map(drop)
        })
        .await?;
        let relay = self.relay.clone();
        let relay_rate = concurrent(calls, concurrency, move || {
            let mut relay = relay.clone();
            async move { relay.forward(relay_request()).await.map(drop) }
        })
        .await?;
        let relay_cpu = self.per_call(before, calls * 2);

        let bytes_before = self.owner_bytes().await;
        let rss_before = self.owner.rss();
        let before = self.cpu();
        let read_seq = sequential(calls, || async { read(caf, dossier).await.map(drop) }).await?;
        let (conn, d) = (caf.clone(), dossier.to_owned());
        let read_rate = concurrent(calls, concurrency, move || {
            let (conn, d) = (conn.clone(), d.clone());
            async move { read(&conn, &d).await.map(drop) }
        })
        .await?;
        let read_cpu = self.per_call(before, calls * 2);
        let bytes_after = self.owner_bytes().await;

        let median = |samples: &[Duration]| {
            let mut sorted = samples.to_vec();
            sorted.sort_unstable();
            percentile(&sorted, 0.5).as_secs_f64()
        };
        let ratio = median(&read_seq) / median(&relay_seq).max(1e-9);
        report("bare two-hop TLS relay (1 KiB), sequential", relay_seq);
        report("consented read (1 KiB), sequential", read_seq);
        println!(
            "{:<44} {:>8.0} calls/s  ({concurrency} in flight)",
            "bare two-hop TLS relay, concurrent", relay_rate
        );
        println!(
            "{:<44} {:>8.0} reads/s  ({concurrency} in flight)",
            "consented read, concurrent", read_rate
        );
        println!(
            "{:<44} {:>8.2} x p50     {:.2} x throughput (goal: within 2.5 x and 4 x)",
            "read against relay",
            ratio,
            relay_rate / read_rate.max(1e-9)
        );
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<44} owner {:>4.0} µs   reader {:>4.0} µs (goal: ≤ 300 µs each)",
            "CPU per read (user + system, /proc)",
            us(read_cpu[0]),
            us(read_cpu[1])
        );
        println!(
            "{:<44} hop 1 {:>4.0} µs   hop 2  {:>4.0} µs",
            "CPU per relay call (user + system, /proc)",
            us(relay_cpu[2]),
            us(relay_cpu[3])
        );
        // What a read cannot do without: the stack a hop of the relay
        // costs, and the read's Ed25519 operations (the owner verifies the
        // request and signs the receipt and the MLS message; the reader
        // signs the request and verifies the receipt and the MLS message).
        let (sign, verify) = signature_costs();
        println!(
            "{:<44} owner {:>4.0} µs   reader {:>4.0} µs (hop 2 + 1 verify + 2 signs; hop 1 + 2 verifies + 1 sign; sign {:.0} µs, verify {:.0} µs)",
            "CPU floor: the stack and the signatures",
            us(relay_cpu[3] + verify + sign * 2),
            us(relay_cpu[2] + verify * 2 + sign),
            us(sign),
            us(verify)
        );
        let n = (calls * 2) as f64;
        println!(
            "{:<44} {:>8.0} B/read   (its audit log: {:.0} B/read; {} reads)",
            "owner store growth (sled files)",
            bytes_after.0.saturating_sub(bytes_before.0) as f64 / n,
            bytes_after.1.saturating_sub(bytes_before.1) as f64 / n,
            calls * 2
        );
        println!(
            "{:<44} {:>8.1} MB -> {:.1} MB",
            "owner resident memory over the reads",
            rss_before as f64 / 1e6,
            self.owner.rss() as f64 / 1e6
        );
        let profile = Profile::read(&self.reader_dir.join("agent.profile.toml"))?;
        let python = super::python::measure(
            &self.work,
            &profile,
            &self.reader_dir,
            dossier,
            calls,
            concurrency,
        );
        match python {
            Ok(m) => {
                println!(
                    "{:<44} p50 {:>8.3} ms   p99 {:>8.3} ms   (n = {calls})",
                    "consented read from Python (grpcio)", m.p50_ms, m.p99_ms
                );
                println!(
                    "{:<44} {:>8.0} reads/s  ({concurrency} in flight)",
                    "consented read from Python, concurrent", m.reads_per_s
                );
            }
            Err(why) => println!("{:<44} skipped: {why}", "consented read from Python"),
        }
        Ok(())
    }

    /// The soak: `reads` consented reads, `concurrency` in flight, then the
    /// owner's and the reader's stores, log and memory before and after.
    pub async fn soak(
        &self,
        caf: &Conn,
        dossier: &str,
        reads: usize,
        concurrency: usize,
        reader_store: &Path,
    ) -> Result<(), CliError> {
        for _ in 0..50 {
            read(caf, dossier).await?;
        }
        let mb = |b: u64| b as f64 / 1e6;
        let sizes = |bytes: (u64, u64)| {
            [
                bytes.0,
                dir_bytes(reader_store),
                bytes.1,
                self.owner.rss(),
                self.reader.rss(),
            ]
        };
        println!(
            "soak: {reads} consented reads of one 1 KiB section, {concurrency} in flight (MB)"
        );
        println!(
            "{:>8} {:>10} {:>13} {:>13} {:>10} {:>11} {:>10}",
            "reads",
            "reads/s",
            "owner store",
            "reader store",
            "owner log",
            "owner RSS",
            "reader RSS"
        );
        let row = |done: usize, rate: f64, s: [u64; 5]| {
            println!(
                "{done:>8} {rate:>10.0} {:>13.1} {:>13.1} {:>10.1} {:>11.1} {:>10.1}",
                mb(s[0]),
                mb(s[1]),
                mb(s[2]),
                mb(s[3]),
                mb(s[4])
            );
        };
        let first = sizes(self.owner_bytes().await);
        row(0, 0.0, first);
        let before = self.cpu();
        let rounds = 10;
        let (mut last, mut warm) = (first, first);
        for round in 1..=rounds {
            let (conn, d) = (caf.clone(), dossier.to_owned());
            let rate = concurrent(reads / rounds, concurrency, move || {
                let (conn, d) = (conn.clone(), d.clone());
                async move { read(&conn, &d).await.map(drop) }
            })
            .await?;
            last = sizes(self.owner_bytes().await);
            row(round * (reads / rounds), rate, last);
            if round == 1 {
                warm = last;
            }
        }
        let cpu = self.per_call(before, reads);
        let change = |i: usize| (last[i] as f64 / first[i].max(1) as f64 - 1.0) * 100.0;
        println!(
            "{:<36} owner store {:+.0} %, reader store {:+.0} %, owner RSS {:+.1} MB, reader RSS {:+.1} MB",
            "over the soak",
            change(0),
            change(1),
            mb(last[3]) - mb(first[3]),
            mb(last[4]) - mb(first[4]),
        );
        // The first round pages in the code of the read path and fills the
        // buffers of `concurrency` streams: what grows after it grows with
        // the reads.
        println!(
            "{:<36} owner RSS {:+.1} MB, reader RSS {:+.1} MB",
            "after the first round",
            mb(last[3]) - mb(warm[3]),
            mb(last[4]) - mb(warm[4]),
        );
        println!(
            "{:<36} owner {:>4.0} µs   reader {:>4.0} µs",
            "CPU per read (user + system, /proc)",
            cpu[0].as_secs_f64() * 1e6,
            cpu[1].as_secs_f64() * 1e6
        );
        Ok(())
    }
}

/// The time of one Ed25519 signature and one verification of a read
/// request's size, under their contexts (median of 2,000 each).
fn signature_costs() -> (Duration, Duration) {
    use maillon_node::crypto::{Context, NodeKey};
    let key = NodeKey::generate();
    let public = key.public();
    let msg = [0x5au8; 400];
    let (mut signs, mut verifies) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let t = Instant::now();
        let sig = key.sign(Context::Request, &msg);
        signs.push(t.elapsed());
        let t = Instant::now();
        let ok = public.verify(Context::Request, &msg, &sig).is_ok();
        verifies.push(t.elapsed());
        assert!(ok, "a fresh signature verifies");
    }
    signs.sort_unstable();
    verifies.sort_unstable();
    (percentile(&signs, 0.5), percentile(&verifies, 0.5))
}

fn missing(what: &str) -> CliError {
    CliError::Unexpected(format!("the bench's {what} process did not start"))
}

fn relay_request() -> tonic::Request<pb::RelayRequest> {
    tonic::Request::new(pb::RelayRequest {
        answer_bytes: PAYLOAD,
    })
}

/// Polls `up` until it answers true, for at most 20 s.
async fn ready<F, Fut>(up: F) -> Result<(), CliError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if up().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CliError::Unexpected(
        "a process of the bench did not answer within 20 s (its log is in the bench folder)".into(),
    ))
}

/// `n` calls one after the other; the time of each.
async fn sequential<F, Fut>(n: usize, call: F) -> Result<Vec<Duration>, CliError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call().await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// About `n` calls, `concurrency` in flight; calls per second.
async fn concurrent<F, Fut>(n: usize, concurrency: usize, call: F) -> Result<f64, CliError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let call = Arc::new(call);
    let per_task = n.div_ceil(concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                call().await?;
            }
            Ok::<(), tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| CliError::Unexpected(format!("a bench task failed: {e}")))??;
    }
    Ok((per_task * concurrency) as f64 / started.elapsed().as_secs_f64())
}
