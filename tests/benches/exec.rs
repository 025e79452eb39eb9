//! Exec latency under concurrency: `true` run through sandboxd (agent library,
//! one connection per client task) against bubblewrap processes, C at a time,
//! both as the same unprivileged uid. Prints p50/p99 per concurrency level.
//!
//! Usage (root; the daemon already running, see scripts/bench):
//!   exec --socket SOCK --cwd DIR --uid UID --total N --conc 1,8,64

use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    socket: PathBuf,
    cwd: PathBuf,
    uid: u32,
    total: usize,
    conc: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        socket: PathBuf::new(),
        cwd: PathBuf::from("/"),
        uid: 1000,
        total: 256,
        conc: vec![1, 8, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--socket" => a.socket = v.into(),
            "--cwd" => a.cwd = v.into(),
            "--uid" => a.uid = v.parse().expect("--uid"),
            "--total" => a.total = v.parse().expect("--total"),
            "--conc" => a.conc = v.split(',').map(|c| c.parse().expect("--conc")).collect(),
            // `cargo bench` passes --bench; ignore it and anything else unknown.
            _ => {}
        }
    }
    a
}

/// Becomes `uid` for good, before any thread exists.
fn become_user(uid: u32) {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    setgroups(&[]).expect("setgroups");
    setresgid(Gid::from_raw(uid), Gid::from_raw(uid), Gid::from_raw(uid)).expect("setresgid");
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid)).expect("setresuid");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(what: &str, conc: usize, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{what:9} concurrency {conc:3}: {n} execs, p50 {:7.2} ms, p99 {:7.2} ms, {:7.1} execs/s",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len() as f64 / wall.as_secs_f64(),
        n = lat.len(),
    );
}

async fn sandboxd_round(a: &Args, conc: usize) -> (Vec<Duration>, Duration) {
    let per_task = a.total.div_ceil(conc);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let socket = a.socket.clone();
        let cwd = a.cwd.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = agent::connect(&socket).await.expect("connect");
            let opts = agent::ExecOptions::new(vec!["/bin/true".into()], cwd);
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let st = agent::run_exec(&mut client, &opts, agent::ExecIo::discard())
                    .await
                    .expect("exec");
                assert_eq!(st.code(), 0, "exec of /bin/true failed: {:?}", st.exit);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    (all, start.elapsed())
}

fn bwrap_round(a: &Args, conc: usize) -> (Vec<Duration>, Duration) {
    let per_task = a.total.div_ceil(conc);
    let start = Instant::now();
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let cwd = a.cwd.clone();
            std::thread::spawn(move || {
                (0..per_task)
                    .map(|_| {
                        let t = Instant::now();
                        let st = std::process::Command::new("bwrap")
                            .args([
                                "--ro-bind",
                                "/",
                                "/",
                                "--dev",
                                "/dev",
                                "--proc",
                                "/proc",
                                "--unshare-all",
                                "true",
                            ])
                            .current_dir(&cwd)
                            .status()
                            .expect("run bwrap");
                        assert!(st.success(), "bwrap failed: {st}");
                        t.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let lat = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    (lat, start.elapsed())
}

fn main() {
    let a = args();
    assert!(!a.socket.as_os_str().is_empty(), "--socket is required");
    become_user(a.uid);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for &conc in &a.conc {
        let (lat, wall) = rt.block_on(sandboxd_round(&a, conc));
        report("sandboxd", conc, lat, wall);
        let (lat, wall) = bwrap_round(&a, conc);
        report("bwrap", conc, lat, wall);
    }
}
