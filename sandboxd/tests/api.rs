//! The API layer: peer identity from real sockets, admission, the sandbox
//! plan, and the real daemon binary on a temporary socket.

use sandbox_proto::v1::exec_response::Msg as Out;
use sandboxd::api::attach::Watchers;
use sandboxd::backend::spec::{FileBind, NetPlan};
use sandboxd::config::DaemonLimits;
use sandboxd::identity::{resolve_group, Account, Caller};
use sandboxd::plan::{self, DaemonPaths};
use sandboxd::policy::{ApprovalMode, EffectiveLimits, EffectivePolicy, LandlockMode, NetworkMode};
use sandboxd::registry::{Info, Registry, RegistryError};
use sandboxd::supervisor::{Control, Handle};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------- /proc/net/unix

const PROC_NET_UNIX: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 20301 /run/systemd/private
0000000000000000: 00000002 00000000 00010000 0001 01 17055 @/org/kernel/abstract
0000000000000000: 00000003 00000000 00000000 0001 03 31337
0000000000000000: 00000002 00000000 00010000 0005 01 40001 /srv/my dir/with space.sock
0000000000000000: 00000002 00000000 00010000 0001 01 40002 relative.sock
0000000000000000: 00000002 00000000 00010000 0002 01 40003 /run/systemd/private
0000000000000000: 00000002 00000000 00010000 0002 01 40004 /dev/log
";

#[test]
fn proc_net_unix_yields_absolute_bound_paths_only() {
    let got = plan::parse_proc_net_unix(PROC_NET_UNIX);
    let want: Vec<PathBuf> = [
        "/dev/log",
        "/run/systemd/private",
        "/srv/my dir/with space.sock",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(got, want);
    assert!(plan::parse_proc_net_unix("").is_empty());
    assert!(plan::parse_proc_net_unix("Num RefCount\n").is_empty());
}

#[test]
fn the_hosts_own_proc_net_unix_parses_and_lists_a_fresh_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.sock");
    let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let listed = plan::read_host_sockets().unwrap();
    assert!(
        listed.contains(&path),
        "{} not in {listed:?}",
        path.display()
    );
    assert!(listed.iter().all(|p| p.is_absolute()));
}

// ---------------------------------------------------------------- identity

#[test]
fn caller_of_a_socketpair_is_this_process() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let c = Caller::of_socket(a.as_fd()).unwrap();
    assert_eq!(c.uid, nix::unistd::getuid().as_raw());
    assert_eq!(c.gid, nix::unistd::getgid().as_raw());
    assert_eq!(c.pid, Some(std::process::id() as i32));
    let mut mine: Vec<u32> = nix::unistd::getgroups()
        .unwrap()
        .iter()
        .map(|g| g.as_raw())
        .collect();
    let mut got = c.groups.clone();
    mine.sort();
    got.sort();
    assert_eq!(got, mine);
}

/// A process running as uid/gid 1000 with supplementary groups connects; the
/// kernel's answer, not anything it sends, is who it is.
#[test]
fn caller_of_another_uid_has_its_uid_gid_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("id.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let code = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(b'uid=0 admin=true')\ntime.sleep(2)",
        path.to_str().unwrap()
    );
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--groups=1000,27,4242",
            "/usr/bin/python3",
            "-c",
            &code,
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let caller = Caller::of_socket(conn.as_fd()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((caller.uid, caller.gid), (1000, 1000));
    assert_eq!(caller.pid, Some(child.id() as i32));
    let mut groups = caller.groups.clone();
    groups.sort();
    assert_eq!(groups, [27, 1000, 4242]);
    assert!(caller.is_admin(Some(4242)));
    assert!(caller.is_admin(Some(1000)));
    assert!(!caller.is_admin(Some(0)));
}

#[test]
fn admin_is_group_membership_and_root_is_not_special() {
    let etc_group = "root:x:0:\nsudo:x:27:alice\nsandboxd-admin:x:4343:bob,carol\nbroken-line\n";
    assert_eq!(resolve_group("sandboxd-admin", etc_group), Some(4343));
    assert_eq!(resolve_group("4343", etc_group), Some(4343));
    assert_eq!(resolve_group("777", ""), Some(777));
    assert_eq!(resolve_group("no-such-group", etc_group), None);
    assert_eq!(resolve_group("", etc_group), None);
    let root = Caller {
        uid: 0,
        gid: 0,
        pid: Some(1),
        groups: vec![0],
    };
    assert!(
        !root.is_admin(Some(4343)),
        "root became admin without the group"
    );
    assert!(!root.is_admin(None));
    let by_primary = Caller {
        uid: 1000,
        gid: 4343,
        pid: None,
        groups: vec![],
    };
    let by_supplementary = Caller {
        uid: 1000,
        gid: 1000,
        pid: None,
        groups: vec![27, 4343],
    };
    let outsider = Caller {
        uid: 1000,
        gid: 1000,
        pid: None,
        groups: vec![27],
    };
    assert!(by_primary.is_admin(Some(4343)));
    assert!(by_supplementary.is_admin(Some(4343)));
    assert!(!outsider.is_admin(Some(4343)));
    assert!(
        !by_supplementary.is_admin(None),
        "no admin group means no admins"
    );
}

// ---------------------------------------------------------------- registry

fn info(id: &str, uid: u32) -> Info {
    Info {
        id: id.into(),
        uid,
        pid: 4242,
        argv: vec!["sleep".into(), "60".into()],
        cwd: "/srv".into(),
        profile: "workspace".into(),
        policy_hash: "h".into(),
        session: String::new(),
        started: SystemTime::now(),
        caller_pid: Some(1),
    }
}

/// An exec's input: `start`, then what comes on `rx`.
fn with_start(
    start: sandbox_proto::v1::ExecRequest,
    rx: tokio::sync::mpsc::Receiver<sandbox_proto::v1::ExecRequest>,
) -> impl tokio_stream::Stream<Item = sandbox_proto::v1::ExecRequest> {
    tokio_stream::StreamExt::chain(
        tokio_stream::iter(vec![start]),
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )
}

/// Reads `stream` until the command prints `ready`.
async fn until_ready(stream: &mut tonic::Streaming<sandbox_proto::v1::ExecResponse>) {
    loop {
        match stream.message().await.unwrap().and_then(|m| m.msg) {
            Some(Out::Stdout(b)) if b.starts_with(b"ready") => break,
            Some(_) => {}
            None => panic!("the stream ended before the command ran"),
        }
    }
}

/// A closing registry admits nothing, kills what runs, and kills at once
/// what starts running afterwards.
#[tokio::test]
async fn a_closing_registry_admits_nothing_and_kills_every_sandbox() {
    let reg = Registry::new(DaemonLimits {
        max_sandboxes: 4,
        max_per_user: 4,
        user_memory: None,
        user_pids: None,
    });
    let running = reg.admit(1000).unwrap();
    let building = reg.admit(1000).unwrap();
    let (handle, _stdin, mut rx) = Handle::channel();
    running
        .run(info(running.id(), 1000), handle, Watchers::default())
        .await;
    assert_eq!(reg.close().await, 1);
    assert!(matches!(rx.recv().await, Some(Control::Kill(r)) if r.contains("shutting down")));
    assert_eq!(reg.admit(1001).unwrap_err(), RegistryError::Closing);
    let (handle, _stdin, mut rx) = Handle::channel();
    building
        .run(info(building.id(), 1000), handle, Watchers::default())
        .await;
    assert!(matches!(rx.recv().await, Some(Control::Kill(r)) if r.contains("shutting down")));
}

#[tokio::test]
async fn registry_enforces_limits_and_ownership() {
    let reg = Registry::new(DaemonLimits {
        max_sandboxes: 3,
        max_per_user: 2,
        user_memory: None,
        user_pids: None,
    });
    let a1 = reg.admit(1000).unwrap();
    let a2 = reg.admit(1000).unwrap();
    assert_ne!(a1.id(), a2.id());
    let e = reg.admit(1000).unwrap_err();
    assert_eq!(e, RegistryError::UserFull { uid: 1000, max: 2 });
    assert!(e.to_string().contains("max_per_user"), "{e}");
    let b1 = reg.admit(1001).unwrap();
    let e = reg.admit(1002).unwrap_err();
    assert_eq!(e, RegistryError::Full { max: 3 });
    assert!(e.to_string().contains("max_sandboxes"), "{e}");
    // Being built: counted, but not listed and not killable.
    assert!(reg.list(None).is_empty());
    let (handle, _stdin, mut rx) = Handle::channel();
    let watchers = Watchers::default();
    b1.run(info(b1.id(), 1001), handle, watchers.clone()).await;
    assert_eq!(reg.list(Some(1001)).len(), 1);
    assert!(reg.list(Some(1000)).is_empty());
    assert_eq!(reg.list(None).len(), 1);
    // Another user may not touch it; an admin may; unknown ids are NotFound.
    let e = control(&reg, b1.id(), 1000, false, Control::Kill("x".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotOwner { .. }), "{e:?}");
    assert!(rx.try_recv().is_none());
    control(&reg, b1.id(), 1000, true, Control::Kill("by admin".into()))
        .await
        .unwrap();
    assert!(matches!(rx.recv().await, Some(Control::Kill(r)) if r == "by admin"));
    control(&reg, b1.id(), 1001, false, Control::Signal(2))
        .await
        .unwrap();
    assert!(matches!(rx.recv().await, Some(Control::Signal(2))));
    let e = control(&reg, "nope", 0, true, Control::Kill(String::new()))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)));
    // Attaching follows the same rule as killing.
    let e = reg.attach(b1.id(), 1000, false).unwrap_err();
    assert!(matches!(e, RegistryError::NotOwner { .. }), "{e:?}");
    assert!(matches!(
        reg.attach(a1.id(), 1000, false).unwrap_err(),
        RegistryError::NotFound(_)
    ));
    let (_, mut own) = reg.attach(b1.id(), 1001, false).unwrap();
    let (_, mut admin) = reg.attach(b1.id(), 1000, true).unwrap();
    watchers.publish(&Out::Stdout(b"hi".to_vec()));
    for sub in [&mut own, &mut admin] {
        assert!(sub.rx.try_recv().is_ok(), "an attacher missed the output");
    }
    // An ended exec whose output is still on its way: gone from the list,
    // from kill and attach, but its place is still taken.
    b1.end();
    assert!(reg.list(None).is_empty());
    let e = control(&reg, b1.id(), 1001, false, Control::Signal(2))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Gone(_)), "{e:?}");
    assert!(matches!(
        reg.attach(b1.id(), 1001, false).unwrap_err(),
        RegistryError::Gone(_)
    ));
    assert_eq!(reg.live(), 2);
    assert_eq!(reg.admit(1002).unwrap_err(), RegistryError::Full { max: 3 });
    // Dropping a slot frees its place.
    drop(a1);
    let c = reg.admit(1002).unwrap();
    assert_eq!(reg.admit(1000).unwrap_err(), RegistryError::Full { max: 3 });
    drop(b1);
    reg.admit(1000).unwrap();
    drop(a2);
    drop(c);
    assert_eq!(reg.live(), 0);
}

// ---------------------------------------------------------------- plan

fn policy(network: NetworkMode, write: &[&str]) -> EffectivePolicy {
    EffectivePolicy {
        profile: "workspace".into(),
        approval: ApprovalMode::OnRequest,
        allow_root: false,
        landlock: LandlockMode::Required,
        read: vec!["/".into()],
        write: write.iter().map(PathBuf::from).collect(),
        write_host: false,
        deny_read: vec!["/home/u1000/.ssh".into(), "**/.env".into()],
        deny_write: vec!["/srv/ws/.git/hooks".into()],
        private_tmp: true,
        home: "/home/u1000".into(),
        network,
        network_allow: vec![],
        net: None,
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("FAVOURITE".into(), "blue".into()),
            ("XDG_RUNTIME_DIR".into(), "/run/user/1000".into()),
        ],
        limits: EffectiveLimits {
            timeout: Some(Duration::from_secs(60)),
            memory: Some(64 << 20),
            pids: Some(100),
            output: 1 << 20,
        },
        hash: "abc".into(),
    }
}

fn paths() -> DaemonPaths {
    DaemonPaths {
        socket: "/run/sandboxd/sandboxd.sock".into(),
        state_dir: "/var/lib/sandboxd".into(),
        policy_dir: "/etc/sandboxd/policies".into(),
        staging: "/var/lib/sandboxd/staging".into(),
        resolv_conf: "/var/lib/sandboxd/resolv.conf".into(),
        ca_bundle: Err("no CA in this test".into()),
    }
}

fn request(cwd: &str) -> plan::Request {
    plan::Request {
        id: "0123abcd".into(),
        argv: vec!["id".into(), "-u".into()],
        cwd: cwd.into(),
        tty: false,
    }
}

#[test]
fn plan_carries_policy_identity_and_limits() {
    let caller = Caller {
        uid: 1000,
        gid: 1000,
        pid: Some(77),
        groups: vec![1000, 27],
    };
    let sockets: Vec<PathBuf> = [
        "/run/dbus/system_bus_socket",
        "/srv/ws/dev.sock",
        "/srv/ws/sub/deeper.sock",
        "/tmp/.X11-unix/X0",
        "/run/sandboxd/sandboxd.sock",
        "/var/lib/sandboxd/x.sock",
        "/srv/wsother.sock",
        "/run/user/1000/bus",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let p = plan::build(
        &policy(NetworkMode::None, &["/srv/ws"]),
        &caller,
        request("/srv/ws"),
        &paths(),
        &sockets,
    )
    .unwrap();
    let s = &p.spec;
    assert_eq!(s.id, "0123abcd");
    assert_eq!(s.argv, ["id", "-u"]);
    assert_eq!(s.cwd, Path::new("/srv/ws"));
    assert_eq!(
        (s.creds.uid, s.creds.gid, s.creds.groups.clone()),
        (1000, 1000, vec![1000, 27])
    );
    assert_eq!(
        s.env,
        [
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("FAVOURITE".into(), "blue".into())
        ]
    );
    assert_eq!(s.fs.read, [PathBuf::from("/")]);
    assert_eq!(s.fs.write, [PathBuf::from("/srv/ws")]);
    assert_eq!(s.fs.deny_read, ["/home/u1000/.ssh", "**/.env"]);
    assert_eq!(s.fs.deny_write, ["/srv/ws/.git/hooks"]);
    assert!(s.fs.private_tmp);
    assert_eq!(s.fs.staging, Path::new("/var/lib/sandboxd/staging"));
    let hide: Vec<&str> = s.fs.hide.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        hide,
        [
            "/etc/sandboxd/policies",
            "/run/sandboxd",
            "/run/user",
            "/var/lib/sandboxd"
        ]
    );
    // Outside every hidden or replaced (/tmp) tree, writable roots included.
    assert_eq!(
        s.fs.host_sockets,
        [
            PathBuf::from("/run/dbus/system_bus_socket"),
            "/srv/ws/dev.sock".into(),
            "/srv/ws/sub/deeper.sock".into(),
            "/srv/wsother.sock".into()
        ]
    );
    assert!(s.landlock.required);
    assert_eq!(s.landlock.connect_tcp, None);
    assert!(matches!(s.net, NetPlan::Loopback));
    assert!(!s.tty);
    assert_eq!(p.limits.memory_bytes, Some(64 << 20));
    assert_eq!(p.limits.pids, Some(100));
    assert_eq!(p.options.timeout, Some(Duration::from_secs(60)));
    assert_eq!(p.options.output_cap, 1 << 20);
    assert_eq!(p.options.grace, Duration::from_secs(2));
}

#[test]
fn plan_network_modes_and_workspace_next_to_the_daemon() {
    let caller = Caller {
        uid: 1000,
        gid: 1000,
        pid: None,
        groups: vec![],
    };
    let full = plan::build(
        &policy(NetworkMode::Full, &["/"]),
        &caller,
        request("/srv/ws"),
        &paths(),
        &[],
    )
    .unwrap();
    assert!(matches!(full.spec.net, NetPlan::Host));
    assert!(full.spec.landlock.connect_tcp.is_none());
    assert!(!full.spec.env.iter().any(|(k, _)| k == "HTTP_PROXY"));
    // A socket straight in a directory that holds the workspace: the directory
    // stays visible, the socket itself is hidden.
    let mut p = paths();
    p.socket = "/srv/sandboxd.sock".into();
    let plan = plan::build(
        &policy(NetworkMode::None, &["/srv/ws"]),
        &caller,
        request("/srv/ws"),
        &p,
        &[],
    )
    .unwrap();
    assert!(
        plan.spec
            .fs
            .hide
            .contains(&PathBuf::from("/srv/sandboxd.sock")),
        "{:?}",
        plan.spec.fs.hide
    );
    assert!(
        !plan.spec.fs.hide.contains(&PathBuf::from("/srv")),
        "{:?}",
        plan.spec.fs.hide
    );
    p.socket = "/sandboxd.sock".into();
    let plan = plan::build(
        &policy(NetworkMode::None, &[]),
        &caller,
        request("/srv/ws"),
        &p,
        &[],
    )
    .unwrap();
    assert!(
        !plan.spec.fs.hide.contains(&PathBuf::from("/")),
        "{:?}",
        plan.spec.fs.hide
    );
}

#[test]
fn home_comes_from_passwd_or_an_owned_home_env() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1002:1002::relative:/bin/sh\n";
    let alice = Account::find(1000, passwd);
    assert_eq!(
        alice,
        Some(Account {
            name: "alice".into(),
            home: Some(PathBuf::from("/home/alice"))
        })
    );
    assert_eq!(Account::find(1001, passwd), None);
    // A named user without a usable home.
    let bob = Account::find(1002, passwd).unwrap();
    assert_eq!((bob.name.as_str(), bob.home), ("bob", None));
    let u1000 = Caller {
        uid: 1000,
        gid: 1000,
        pid: None,
        groups: vec![],
    };
    let u1001 = Caller {
        uid: 1001,
        gid: 1001,
        pid: None,
        groups: vec![],
    };
    assert_eq!(
        plan::caller_home(&u1000, alice.as_ref(), Some("/tmp")),
        Path::new("/home/alice")
    );
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(1001), Some(1001)).unwrap();
    let h = home.to_str().unwrap();
    assert_eq!(
        plan::caller_home(&u1001, Account::find(1001, passwd).as_ref(), Some(h)),
        home
    );
    // Someone else's directory, a relative path, a symlink, nothing: no home.
    assert_eq!(
        plan::caller_home(&u1000, None, Some(h)),
        Path::new(plan::NO_HOME)
    );
    assert_eq!(
        plan::caller_home(&u1001, None, Some("relative")),
        Path::new(plan::NO_HOME)
    );
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    assert_eq!(
        plan::caller_home(&u1001, None, link.to_str()),
        Path::new(plan::NO_HOME)
    );
    assert_eq!(
        plan::caller_home(&u1001, None, None),
        Path::new(plan::NO_HOME)
    );
}

#[test]
fn staging_dir_is_root_owned_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = plan::prepare_staging(dir.path()).unwrap();
    let meta = std::fs::metadata(&s).unwrap();
    assert!(meta.is_dir());
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o500);
    // Again: fine. With something inside: refused.
    plan::prepare_staging(dir.path()).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(s.join("x"), "").unwrap();
    let e = plan::prepare_staging(dir.path()).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
}

// ---------------------------------------------------------------- the binary

struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(profiles: &[(&str, &str)]) -> Daemon {
        Self::start_with("", profiles)
    }

    fn start_with(config_toml: &str, profiles: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/sandboxd.sock");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        for (name, body) in profiles {
            std::fs::write(policy_dir.join(format!("{name}.toml")), body).unwrap();
        }
        let config = dir.path().join("sandboxd.toml");
        std::fs::write(&config, config_toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sandboxd"))
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--policy-dir")
            .arg(&policy_dir)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sandboxd exited early: {status}");
            }
            assert!(Instant::now() < deadline, "sandboxd not ready after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            socket,
            _dir: dir,
        }
    }

    async fn channel(&self) -> tonic::transport::Channel {
        self.channel_on(tonic::transport::Endpoint::try_from("http://sandboxd.invalid").unwrap())
            .await
    }

    /// A channel whose calls take in their responses one byte at a time
    /// (a stream window of one byte): a client that reads slowly.
    async fn slow_channel(&self) -> tonic::transport::Channel {
        let endpoint = tonic::transport::Endpoint::try_from("http://sandboxd.invalid")
            .unwrap()
            .initial_stream_window_size(1);
        self.channel_on(endpoint).await
    }

    async fn channel_on(&self, endpoint: tonic::transport::Endpoint) -> tonic::transport::Channel {
        let path = self.socket.clone();
        endpoint
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap()
    }

    /// A channel on one connection made with the given identity.
    async fn channel_as(&self, uid: u32, groups: &[u32]) -> tonic::transport::Channel {
        let stream = connect_as(&self.socket, uid, groups);
        stream.set_nonblocking(true).unwrap();
        let once = std::sync::Arc::new(std::sync::Mutex::new(Some(stream)));
        tonic::transport::Endpoint::try_from("http://sandboxd.invalid")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let stream = once.lock().unwrap().take();
                async move {
                    let stream =
                        stream.ok_or_else(|| std::io::Error::other("connection already used"))?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::from_std(stream)?,
                    ))
                }
            }))
            .await
            .unwrap()
    }

    /// Asserts that List (as root, all users') shows no sandbox within
    /// moments (an exec's end is on record just before it leaves the list).
    async fn assert_none_listed(&self) {
        use sandbox_proto::v1::{sandbox_client::SandboxClient, ListRequest};
        let mut client = SandboxClient::new(self.channel().await);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let list = client
                .list(ListRequest { all: true })
                .await
                .unwrap()
                .into_inner();
            if list.sandboxes.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "{list:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then wait (at most 10 s) for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "sandboxd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_serves_health_reflection_profiles_and_survives_garbage() {
    use sandbox_proto::v1::sandbox_client::SandboxClient;
    let mut d = Daemon::start(&[]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);

    // Garbage first, on connections left open, then a real client.
    let mut junk = Vec::new();
    for payload in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x00\xff\x13garbage garbage\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff",
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        let _ = s.write_all(payload);
        junk.push(s);
    }

    let ch = d.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "sandbox.v1.Sandbox".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    for v1 in [true, false] {
        let names = if v1 {
            reflection_v1(ch.clone()).await
        } else {
            reflection_v1alpha(ch.clone()).await
        };
        assert!(
            names.iter().any(|n| n == "sandbox.v1.Sandbox"),
            "v1={v1}: {names:?}"
        );
    }

    let mut client = SandboxClient::new(ch.clone());
    let profiles = client
        .list_profiles(sandbox_proto::v1::ListProfilesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<String> = profiles.profiles.iter().map(|p| p.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["full", "read-only", "workspace"]);
    assert_eq!(profiles.default_profile, "workspace");
    let e = client
        .get_profile(sandbox_proto::v1::GetProfileRequest {
            name: "no-such-profile".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("no-such-profile"), "{}", e.message());
    // Nothing runs: an ordinary List is empty, Kill of an unknown id is NotFound.
    let list = client
        .list(sandbox_proto::v1::ListRequest { all: true })
        .await
        .unwrap()
        .into_inner();
    assert!(list.sandboxes.is_empty());
    let e = client
        .kill(sandbox_proto::v1::KillRequest {
            id: "nope".into(),
            signal: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // More garbage mid-session does not disturb a fresh client either.
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    let _ = s.write_all(&[0xffu8; 4096]);
    drop(s);
    let mut again = SandboxClient::new(d.channel().await);
    again
        .list_profiles(sandbox_proto::v1::ListProfilesRequest {})
        .await
        .unwrap();
    drop(junk);

    let status = d.stop();
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "socket left behind after SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_must_start_with_exec_start() {
    use sandbox_proto::v1::{
        exec_request::Msg, sandbox_client::SandboxClient, ExecRequest, StdinEof,
    };
    let d = Daemon::start(&[]);
    let mut client = SandboxClient::new(d.channel().await);
    let first = ExecRequest {
        msg: Some(Msg::StdinEof(StdinEof {})),
    };
    let e = client
        .exec(tokio_stream::iter(vec![first]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("ExecStart"), "{}", e.message());
}

/// Defines `$name`, which lists the services the daemon names through reflection version `$version`.
macro_rules! reflection_list {
    ($name:ident, $version:ident) => {
        async fn $name(ch: tonic::transport::Channel) -> Vec<String> {
            use tonic_reflection::pb::$version::{
                server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse, ServerReflectionRequest,
            };
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream = ServerReflectionClient::new(ch)
                .server_reflection_info(tokio_stream::iter(vec![req]))
                .await
                .unwrap()
                .into_inner();
            match stream
                .message()
                .await
                .unwrap()
                .and_then(|r| r.message_response)
            {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    l.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
    };
}

reflection_list!(reflection_v1, v1);
reflection_list!(reflection_v1alpha, v1alpha);

fn check_config(files: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let cfg = dir.path().join("empty-config.toml");
    std::fs::write(&cfg, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_sandboxd"))
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .arg("--policy-dir")
        .arg(dir.path())
        .output()
        .unwrap()
}

#[test]
fn check_config_prints_profiles_or_names_the_broken_line() {
    let ok = check_config(&[(
        "mine.toml",
        "extends = \"workspace\"\ndescription = \"mine\"\n",
    )]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for name in ["read-only", "workspace", "full", "mine"] {
        assert!(
            stdout.contains(&format!("# profile {name} ")),
            "{name} missing:\n{stdout}"
        );
    }
    let bad = check_config(&[("bad.toml", "description = \"x\"\n\nbogus_key = 1\n")]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("bad.toml:3") && stderr.contains("bogus_key"),
        "{stderr}"
    );
}

/// `check-config` on the daemon config `config` (with `{dir}` standing for
/// a scratch directory holding `files`), and no profiles of its own.
fn check_daemon_config(config: &str, files: &[(&str, &str, u32)]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, body, mode) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let cfg = dir.path().join("sandboxd.toml");
    let config = config.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&cfg, config).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sandboxd"))
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .arg("--policy-dir")
        .arg(dir.path().join("policies"))
        .output()
        .unwrap()
}

/// `check-config` reads what the daemon would refuse to start on (a secret
/// file missing or open to others, an extra root that is no certificate),
/// naming the config line; a `users` name nobody has is a warning.
#[test]
fn check_config_reads_secret_files_and_extra_roots() {
    let secret = "[secrets]\nTOK = { file = \"{dir}/tok\", users = [\"root\", \"nosuchuser\"] }\n";
    let out = check_daemon_config(secret, &[("tok", "x\n", 0o600)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: secrets.TOK.users: no user \"nosuchuser\""),
        "{stderr}"
    );
    assert!(!stderr.contains("\"root\""), "{stderr}");
    for (files, want) in [
        (&[][..], "No such file"),
        (
            &[("tok", "x\n", 0o644)][..],
            "not readable by group or others",
        ),
    ] {
        let out = check_daemon_config(secret, files);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("sandboxd.toml:2: key `secrets.TOK.file`: ") && stderr.contains(want),
            "{stderr}"
        );
    }
    let roots = "[tls]\nextra_roots = [\"{dir}/corp.pem\"]\n";
    let out = check_daemon_config(roots, &[("corp.pem", "not a certificate\n", 0o644)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sandboxd.toml:2: key `tls.extra_roots`: ")
            && stderr.contains("corp.pem")
            && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
    // A file that is not there is named the same way.
    let roots = "[tls]\nextra_roots = [\"{dir}/none.pem\"]\n";
    let out = check_daemon_config(roots, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sandboxd.toml:2: key `tls.extra_roots`: ") && stderr.contains("none.pem"),
        "{stderr}"
    );
}

#[test]
fn daemon_refuses_to_start_on_a_broken_profile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "nonsense = true\n").unwrap();
    let cfg = dir.path().join("empty-config.toml");
    std::fs::write(&cfg, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sandboxd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--policy-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.toml:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("s.sock").exists());
}

/// An ExecStart for a root caller's command in `cwd` under `profile`.
fn exec_start(profile: &str, cwd: &Path, argv: &[&str]) -> sandbox_proto::v1::ExecRequest {
    use sandbox_proto::v1::{exec_request::Msg, ExecRequest, ExecStart};
    let env = [("PATH".to_string(), "/usr/bin:/bin".to_string())]
        .into_iter()
        .collect();
    ExecRequest {
        msg: Some(Msg::Start(ExecStart {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.to_str().unwrap().into(),
            env,
            profile: profile.into(),
            ..Default::default()
        })),
    }
}

/// A workspace for the exec tests: not under /tmp (sandboxes get their own).
fn workspace() -> tempfile::TempDir {
    std::fs::create_dir_all("/srv").unwrap();
    tempfile::Builder::new()
        .prefix("sandboxd-api-")
        .tempdir_in("/srv")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_output_and_exit_and_refuses_root_without_allow_root() {
    use sandbox_proto::v1::{exec_response::Msg, sandbox_client::SandboxClient};
    let d = Daemon::start(&[("rooty", "extends = \"workspace\"\nallow_root = true\n")]);
    let ws = workspace();
    let mut client = SandboxClient::new(d.channel().await);

    let start = exec_start("", ws.path(), &["true"]);
    let e = client
        .exec(tokio_stream::iter(vec![start]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("allow_root"), "{}", e.message());
    let start = exec_start("no-such-profile", ws.path(), &["true"]);
    let e = client
        .exec(tokio_stream::iter(vec![start]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("no-such-profile"), "{}", e.message());

    let start = exec_start(
        "rooty",
        ws.path(),
        &["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    let (_keep, rx) = tokio::sync::mpsc::channel(1);
    let first = tokio_stream::iter(vec![start]);
    let input =
        tokio_stream::StreamExt::chain(first, tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut stream = client.exec(input).await.unwrap().into_inner();
    let (mut stdout, mut stderr, mut started, mut exit) = (Vec::new(), Vec::new(), None, None);
    while let Some(m) = stream.message().await.unwrap() {
        match m.msg {
            Some(Msg::Started(s)) => started = Some(s),
            Some(Msg::Stdout(b)) => stdout.extend(b),
            Some(Msg::Stderr(b)) => stderr.extend(b),
            Some(Msg::Exit(e)) => exit = Some(e),
            _ => {}
        }
    }
    let started = started.expect("no ExecStarted");
    assert_eq!(started.profile, "rooty");
    assert_eq!(started.id.len(), 12);
    assert!(!started.policy_hash.is_empty());
    assert_eq!(String::from_utf8_lossy(&stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "err\n");
    let exit = exit.expect("no ExecExit");
    assert!(exit.exited);
    assert_eq!(exit.code, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_takes_its_sandbox_with_it() {
    use sandbox_proto::v1::{sandbox_client::SandboxClient, ListRequest};
    let d = Daemon::start(&[("rooty", "extends = \"workspace\"\nallow_root = true\n")]);
    let ws = workspace();
    let marker = format!("api-gone-{}", std::process::id());
    let script = format!("echo ready; sleep 300; : {marker}");
    {
        let mut client = SandboxClient::new(d.channel().await);
        let start = exec_start("rooty", ws.path(), &["/bin/sh", "-c", &script]);
        let (_keep, rx) = tokio::sync::mpsc::channel(1);
        let input = with_start(start, rx);
        let mut stream = client.exec(input).await.unwrap().into_inner();
        until_ready(&mut stream).await;
        let list = SandboxClient::new(d.channel().await)
            .list(ListRequest { all: false })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.sandboxes.len(), 1);
        assert_eq!(list.sandboxes[0].uid, 0);
        assert!(list.sandboxes[0].argv.iter().any(|a| a.contains(&marker)));
        // Stream, client and channel dropped here: the connection goes away.
    }
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                .unwrap_or(false)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while running() {
        assert!(Instant::now() < deadline, "sandbox survived its client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = SandboxClient::new(d.channel().await);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !client
        .list(ListRequest { all: false })
        .await
        .unwrap()
        .into_inner()
        .sandboxes
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "registry entry outlived the sandbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_kills_running_sandboxes_and_removes_the_socket() {
    use sandbox_proto::v1::{exec_response::Msg, sandbox_client::SandboxClient};
    let mut d = Daemon::start(&[("rooty", "extends = \"workspace\"\nallow_root = true\n")]);
    let ws = workspace();
    let marker = format!("api-term-{}", std::process::id());
    let script = format!("echo ready; sleep 300; : {marker}");
    let mut client = SandboxClient::new(d.channel().await);
    let start = exec_start("rooty", ws.path(), &["/bin/sh", "-c", &script]);
    let (_keep, rx) = tokio::sync::mpsc::channel(1);
    let input = with_start(start, rx);
    let mut stream = client.exec(input).await.unwrap().into_inner();
    while !matches!(
        stream.message().await.unwrap().and_then(|m| m.msg),
        Some(Msg::Stdout(_))
    ) {}
    let status = tokio::task::spawn_blocking(move || {
        let s = d.stop();
        (s, d)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.0);
    assert!(!status.1.socket.exists(), "socket left behind");
    let survivors = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&marker))
            .unwrap_or(false)
    });
    assert!(!survivors, "a sandbox outlived the daemon");
    // The client saw its exec end (killed), not a hang.
    let mut exit = None;
    while let Ok(Some(m)) = stream.message().await {
        if let Some(Msg::Exit(e)) = m.msg {
            exit = Some(e);
        }
    }
    if let Some(e) = exit {
        assert_eq!(e.signal, 9, "{e:?}");
    }
}

/// Connects to `socket` as `uid` (gid = uid) with `groups`: one thread
/// switches its own credentials with raw syscalls (which, unlike libc's
/// wrappers, affect only the calling thread), connects, and switches back.
fn connect_as(socket: &Path, uid: u32, groups: &[u32]) -> std::os::unix::net::UnixStream {
    let socket = socket.to_path_buf();
    let groups: Vec<libc::gid_t> = groups.to_vec();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's credentials; the saved ids
        // stay 0 so the thread can switch back.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, uid, uid, 0), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, 0), 0);
        }
        let stream = std::os::unix::net::UnixStream::connect(&socket);
        // SAFETY: as above.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresuid, 0, 0, 0), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, 0, 0, 0), 0);
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
        }
        stream.unwrap()
    })
    .join()
    .unwrap()
}

/// The ids of the sandboxes List shows `client`, every user's where `all`.
async fn listed(
    client: &mut sandbox_proto::v1::sandbox_client::SandboxClient<tonic::transport::Channel>,
    all: bool,
) -> Vec<String> {
    let list = client
        .list(sandbox_proto::v1::ListRequest { all })
        .await
        .unwrap()
        .into_inner();
    list.sandboxes.into_iter().map(|s| s.id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_run_as_their_caller_and_only_owners_and_admins_see_and_kill_them() {
    use sandbox_proto::v1::{exec_response::Msg, sandbox_client::SandboxClient, KillRequest};
    let d = Daemon::start_with("admin_group = \"4343\"\n", &[]);
    let ws = workspace();
    std::os::unix::fs::chown(ws.path(), Some(1001), Some(1001)).unwrap();
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut owner = SandboxClient::new(d.channel_as(1001, &[1001, 27]).await);
    let mut other = SandboxClient::new(d.channel_as(1000, &[1000]).await);
    let mut admin = SandboxClient::new(d.channel_as(1000, &[1000, 4343]).await);

    let start = exec_start(
        "",
        ws.path(),
        &["/bin/sh", "-c", "id -u; id -g; id -G; sleep 300"],
    );
    let (_keep, rx) = tokio::sync::mpsc::channel(1);
    let input = with_start(start, rx);
    let mut stream = owner.exec(input).await.unwrap().into_inner();
    let mut id = String::new();
    let mut out = String::new();
    while out.lines().count() < 3 {
        match stream.message().await.unwrap().and_then(|m| m.msg) {
            Some(Msg::Started(s)) => id = s.id,
            Some(Msg::Stdout(b)) => out.push_str(&String::from_utf8_lossy(&b)),
            Some(_) => {}
            None => panic!("ended early: {out}"),
        }
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1001");
    assert_eq!(lines[1], "1001");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["1001", "27"]);

    assert_eq!(listed(&mut owner, false).await, [id.clone()]);
    assert!(listed(&mut other, false).await.is_empty());
    assert!(listed(&mut other, true).await.is_empty());
    assert!(listed(&mut admin, false).await.is_empty());
    assert_eq!(listed(&mut admin, true).await, [id.clone()]);

    let e = other
        .kill(KillRequest {
            id: id.clone(),
            signal: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    admin
        .kill(KillRequest {
            id: id.clone(),
            signal: 0,
        })
        .await
        .unwrap();
    let exit = exit_of(&mut stream).await;
    let exit = exit.expect("no ExecExit after the kill");
    assert_eq!(exit.signal, 9, "{exit:?}");
    assert!(exit.reason.contains("killed by uid 1000"), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_policy_explains_paths_urls_and_commands() {
    use sandbox_proto::v1::{
        check_policy_request::Query, sandbox_client::SandboxClient, CheckPolicyRequest,
        CommandQuery,
    };
    let d = Daemon::start(&[]);
    let mut client = SandboxClient::new(d.channel().await);
    let check = |profile: &str, cwd: &str, query: Query| {
        let req = CheckPolicyRequest {
            profile: profile.into(),
            query: Some(query),
            cwd: cwd.into(),
        };
        let mut client = client.clone();
        async move { client.check_policy(req).await.map(|r| r.into_inner()) }
    };
    // Each row: case, profile, cwd, query, decision, what the rule names if checked.
    let decided = [
        (
            "a write in the workspace",
            "workspace",
            "/srv/ws",
            Query::Write("/srv/ws/file.txt".into()),
            "allow",
            None,
        ),
        (
            "a write to /etc",
            "workspace",
            "/srv/ws",
            Query::Write("/etc/passwd".into()),
            "deny",
            None,
        ),
        (
            "a write to a git hook",
            "",
            "/srv/ws",
            Query::Write("/srv/ws/.git/hooks/pre-commit".into()),
            "deny",
            Some("deny_write"),
        ),
        // Root's home comes from /etc/passwd.
        (
            "a read of root's ssh key",
            "workspace",
            "",
            Query::Read("/root/.ssh/id_ed25519".into()),
            "deny",
            Some("deny_read"),
        ),
        (
            "a URL with no network",
            "workspace",
            "",
            Query::Url("https://example.com/".into()),
            "deny",
            None,
        ),
        (
            "a URL with full network",
            "full",
            "",
            Query::Url("https://example.com/".into()),
            "allow",
            None,
        ),
    ];
    for (case, profile, cwd, query, decision, rule) in decided {
        let r = check(profile, cwd, query)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(r.decision, decision, "{case}: {r:?}");
        if let Some(rule) = rule {
            assert!(r.rule.contains(rule), "{case}: {r:?}");
        }
    }
    let r = check(
        "workspace",
        "",
        Query::Cmd(CommandQuery {
            argv: vec!["ls".into()],
        }),
    )
    .await
    .unwrap();
    assert!(["allow", "prompt"].contains(&r.decision.as_str()), "{r:?}");
    let e = check("nope", "", Query::Read("/".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = client.check_policy(CheckPolicyRequest {
        profile: "workspace".into(),
        query: None,
        cwd: String::new(),
    });
    assert_eq!(e.await.unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_and_prompted_commands_are_refused_naming_the_rule() {
    use sandbox_proto::v1::sandbox_client::SandboxClient;
    let profile = "extends = \"workspace\"\nallow_root = true\n[commands]\nforbidden = [[\"rm\", \"-rf\"]]\nprompt = [[\"git\", \"push\"]]\n";
    let d = Daemon::start(&[("strict", profile)]);
    let ws = workspace();
    let mut client = SandboxClient::new(d.channel().await);
    for (argv, rule) in [
        (&["rm", "-rf", "x"][..], "commands.forbidden"),
        (&["git", "push", "origin"], "commands.prompt"),
    ] {
        let start = exec_start("strict", ws.path(), argv);
        let e = client
            .exec(tokio_stream::iter(vec![start]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains(rule) && e.message().contains("strict.toml"),
            "{}",
            e.message()
        );
    }
}

/// An allowlist policy from a profile in a temp policy dir.
fn allowlist_policy(profile_toml: &str) -> EffectivePolicy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("net.toml"), profile_toml).unwrap();
    let store = sandboxd::policy::PolicyStore::load(Some(dir.path()), true).unwrap();
    let profile = store.get("net").unwrap();
    let mut p = policy(NetworkMode::Allowlist, &["/srv/ws"]);
    p.net =
        Some(sandboxd::net::NetPolicy::from_profile(profile, None, ApprovalMode::Never).unwrap());
    p
}

#[test]
fn plan_allowlist_points_the_sandbox_at_its_own_proxy_and_resolver() {
    let caller = Caller {
        uid: 1000,
        gid: 1000,
        pid: None,
        groups: vec![],
    };
    let profile =
        "extends = \"workspace\"\n[network]\nmode = \"allowlist\"\nallow = [\"crates.io\"]\n";
    let mut pol = allowlist_policy(profile);
    pol.env
        .push(("HTTP_PROXY".into(), "http://evil.test:1".into()));
    let plan = plan::build(&pol, &caller, request("/srv/ws"), &paths(), &[]).unwrap();
    let s = &plan.spec;
    assert!(
        matches!(s.net, NetPlan::Loopback),
        "its own namespace, lo only"
    );
    assert_eq!(s.landlock.connect_tcp, Some(vec![3128, 1080, 53]));
    let env = |k: &str| {
        s.env
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        env("HTTP_PROXY"),
        ["http://127.0.0.1:3128"],
        "the caller's value is replaced"
    );
    assert_eq!(env("https_proxy"), ["http://127.0.0.1:3128"]);
    assert_eq!(env("ALL_PROXY"), ["socks5h://127.0.0.1:1080"]);
    assert_eq!(env("NO_PROXY"), ["localhost,127.0.0.1,::1"]);
    assert!(
        env("SSL_CERT_FILE").is_empty(),
        "no inspection, no CA variables"
    );
    assert_eq!(
        s.fs.files,
        [FileBind {
            source: "/var/lib/sandboxd/resolv.conf".into(),
            target: "/etc/resolv.conf".into()
        }]
    );

    // Inspection: the bundle replaces the system one, and the variables point at it.
    let inspecting = allowlist_policy(&format!("{profile}inspect = true\n"));
    let e = plan::build(&inspecting, &caller, request("/srv/ws"), &paths(), &[]).unwrap_err();
    assert!(
        e.to_string().contains("no CA in this test") && e.to_string().contains("network.inspect"),
        "{e}"
    );
    let mut p = paths();
    p.ca_bundle = Ok("/var/lib/sandboxd/ca/bundle.pem".into());
    let plan = plan::build(&inspecting, &caller, request("/srv/ws"), &p, &[]).unwrap();
    assert!(plan.spec.fs.files.contains(&FileBind {
        source: "/var/lib/sandboxd/ca/bundle.pem".into(),
        target: "/etc/ssl/certs/ca-certificates.crt".into()
    }));
    for k in [
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
        "CARGO_HTTP_CAINFO",
    ] {
        assert!(
            plan.spec.env.contains(&(
                k.to_string(),
                "/etc/ssl/certs/ca-certificates.crt".to_string()
            )),
            "{k}"
        );
    }
}

/// Sends `c` to sandbox `id` as `uid` (with `admin`), as a kill request does.
async fn control(
    reg: &Registry,
    id: &str,
    uid: u32,
    admin: bool,
    c: Control,
) -> Result<Info, RegistryError> {
    reg.target(id, uid, admin)?.send(c).await
}

/// A kill or attach of any string is refused and recorded; the record keeps
/// a bounded id and message, so a caller cannot fill the disk with refusals
/// that cost nothing.
#[tokio::test(flavor = "multi_thread")]
async fn refused_kills_and_attaches_keep_bounded_records() {
    use sandbox_proto::v1::sandbox_client::SandboxClient;
    let d = Daemon::start(&[]);
    let mut client = SandboxClient::new(d.channel().await);
    let huge = "f".repeat(1 << 20);
    let e = client
        .kill(sandbox_proto::v1::KillRequest {
            id: huge.clone(),
            signal: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = client
        .attach(sandbox_proto::v1::AttachRequest { id: huge })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let log = std::fs::read_to_string(d._dir.path().join("state/audit.jsonl")).unwrap();
    let refusals: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "refusal")
        .collect();
    let requests: Vec<&str> = refusals
        .iter()
        .map(|r| r["request"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(requests, ["kill", "attach"], "{:.2000}", log);
    for r in &refusals {
        let id = r["id"].as_str().unwrap();
        assert!(id.starts_with("ffff") && id.len() < 128, "{id:.200}");
        assert!(id.ends_with(&format!("({} bytes in all)", 1 << 20)), "{id}");
        assert!(r.to_string().len() < 8 << 10, "{:.300}", r.to_string());
    }
}

/// The daemon's resident memory, from /proc/PID/status.
fn vm_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

/// A client that floods signals and resizes, without reading its stream,
/// at a command whose output fills every buffer on the way: what waits for
/// the sandbox is bounded (signals, one resize), so the daemon stays small,
/// the exec still ends with its own status, and others are served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_signals_and_resizes_keeps_the_daemon_small() {
    use sandbox_proto::v1::{
        exec_request::Msg as In, sandbox_client::SandboxClient, ExecRequest, ListRequest,
        SignalRequest, WindowSize,
    };
    const FLOOD: usize = 4_000_000;
    let d = Daemon::start(&[("rooty", "extends = \"workspace\"\nallow_root = true\n")]);
    let ws = workspace();
    let mut client = SandboxClient::new(d.channel().await);
    // A writer left behind fills the output's buffers; the shell ends on
    // its own, ignoring the signals.
    let script = "trap '' HUP; echo ready; head -c 8000000 /dev/zero & sleep 1; exit 7";
    let start = exec_start("rooty", ws.path(), &["/bin/sh", "-c", script]);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let input = with_start(start, rx);
    let mut stream = client.exec(input).await.unwrap().into_inner();
    // From the trap on, then not read any more.
    until_ready(&mut stream).await;
    let pid = d.child.id();
    let before = vm_rss(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = {
        let (peak, flooding) = (peak.clone(), flooding.clone());
        std::thread::spawn(move || {
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(vm_rss(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let sent = Instant::now();
    for i in 0..FLOOD {
        let msg = if i % 2 == 0 {
            In::Signal(SignalRequest {
                signal: libc::SIGHUP,
            })
        } else {
            In::Resize(WindowSize {
                rows: i as u32,
                cols: 80,
            })
        };
        tx.send(ExecRequest { msg: Some(msg) })
            .await
            .expect("the exec's stream ended during the flood");
    }
    // Another caller is served while the flood is read (the exec may have
    // ended meanwhile: its end does not wait for its unread output).
    let mut other = SandboxClient::new(d.channel().await);
    tokio::time::timeout(
        Duration::from_secs(10),
        other.list(ListRequest { all: true }),
    )
    .await
    .expect("another caller was not served during the flood")
    .unwrap();
    drop(tx);
    let exit = exit_of(&mut stream).await;
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    watch.join().unwrap();
    let exit = exit.expect("no ExecExit after the flood");
    assert!(exit.exited && exit.code == 7, "{exit:?}");
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!(
        "{FLOOD} controls sent in {:?}; daemon grew {} KiB",
        sent.elapsed(),
        growth >> 10
    );
    assert!(growth < 64 << 20, "the daemon grew by {} MiB", growth >> 20);
}

/// Signals through the API: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
/// SIGUSR2 reach the command, on the exec's stream as through Kill; any
/// other is refused naming it (an event on the stream, INVALID_ARGUMENT
/// from Kill) and the command runs on; SIGKILL is a kill.
#[tokio::test(flavor = "multi_thread")]
async fn only_harmless_signals_reach_the_command() {
    use sandbox_proto::v1::{
        exec_request::Msg as In, exec_response::Msg, sandbox_client::SandboxClient, ExecRequest,
        KillRequest, SignalRequest,
    };
    let d = Daemon::start(&[("rooty", "extends = \"workspace\"\nallow_root = true\n")]);
    let ws = workspace();
    let mut client = SandboxClient::new(d.channel().await);
    let script = "for s in INT TERM HUP QUIT USR1 USR2; do trap \"echo got-$s\" $s; done; \
                  echo ready; while :; do sleep 0.05; done";
    let start = exec_start("rooty", ws.path(), &["/bin/sh", "-c", script]);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let input = with_start(start, rx);
    let mut stream = client.exec(input).await.unwrap().into_inner();
    let mut id = String::new();
    let mut out = String::new();
    let mut refused: Vec<sandbox_proto::v1::Event> = Vec::new();
    let mut exit = None;
    // Reads the stream until stdout shows `needle` (or, with "", until the exit).
    macro_rules! read_until {
        ($needle:expr) => {
            let needle: &str = $needle;
            let read = async {
                while needle.is_empty() || !out.contains(needle) {
                    match stream.message().await.unwrap().and_then(|m| m.msg) {
                        Some(Msg::Started(s)) => id = s.id,
                        Some(Msg::Stdout(b)) => out.push_str(&String::from_utf8_lossy(&b)),
                        Some(Msg::Event(e)) if e.kind == "signal-refused" => refused.push(e),
                        Some(Msg::Exit(e)) => exit = Some(e),
                        Some(_) => {}
                        None if needle.is_empty() => break,
                        None => panic!("ended before {needle:?}: {out}"),
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), read)
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in 30 s: {out}; refused: {refused:?}"));
        };
    }
    let signal = |n: i32| ExecRequest {
        msg: Some(In::Signal(SignalRequest { signal: n })),
    };
    read_until!("ready");
    // SIGINT last: it starts the grace period.
    for (n, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
    ] {
        tx.send(signal(n)).await.unwrap();
        read_until!(&format!("got-{name}\n"));
    }
    let bad = [
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGCHLD, "SIGCHLD"),
        (0, "signal 0 (not a signal)"),
        (-1, "signal -1 (not a signal)"),
        (65, "signal 65 (not a signal)"),
    ];
    for (n, _) in bad {
        tx.send(signal(n)).await.unwrap();
    }
    // Still running, not stopped: a signal sent after them is handled.
    tx.send(signal(libc::SIGUSR1)).await.unwrap();
    read_until!("got-USR2\ngot-USR1\n");
    let named: Vec<&str> = refused.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(named.len(), bad.len(), "{named:?}");
    for ((n, name), e) in bad.iter().zip(&refused) {
        assert!(e.message.contains(name), "{name}: {}", e.message);
        assert_eq!(e.fields["signal"], n.to_string());
    }
    // Kill takes the same signals.
    let mut other = SandboxClient::new(d.channel().await);
    for (n, name) in bad.iter().filter(|(n, _)| *n != 0) {
        let e = other
            .kill(KillRequest {
                id: id.clone(),
                signal: *n,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(name), "{name}: {}", e.message());
    }
    other
        .kill(KillRequest {
            id: id.clone(),
            signal: libc::SIGINT,
        })
        .await
        .unwrap();
    read_until!("got-INT\n");
    // SIGKILL on the stream ends it as a kill.
    tx.send(signal(libc::SIGKILL)).await.unwrap();
    read_until!("");
    let exit = exit.expect("no ExecExit");
    assert_eq!(exit.signal, libc::SIGKILL, "{exit:?}");
    assert!(exit.reason.contains("SIGKILL"), "{exit:?}");
    let log = std::fs::read_to_string(d._dir.path().join("state/audit.jsonl")).unwrap();
    let refusals = log
        .lines()
        .filter(|l| l.contains("\"refusal\"") && l.contains("\"rule\":\"signal\""))
        .count();
    assert_eq!(refusals, bad.len() - 1, "{log}");
}

/// Starts `script` under "rooty" as root and reads its stream until stdout
/// shows "ready"; the stream (still open) and the sandbox's id.
async fn running(
    d: &Daemon,
    ws: &Path,
    script: &str,
) -> (
    tonic::Streaming<sandbox_proto::v1::ExecResponse>,
    tokio::sync::mpsc::Sender<sandbox_proto::v1::ExecRequest>,
    String,
) {
    use sandbox_proto::v1::{exec_response::Msg, sandbox_client::SandboxClient};
    let mut client = SandboxClient::new(d.channel().await);
    let start = exec_start("rooty", ws, &["/bin/sh", "-c", script]);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let input = with_start(start, rx);
    let mut stream = client.exec(input).await.unwrap().into_inner();
    let mut id = String::new();
    loop {
        match stream.message().await.unwrap().and_then(|m| m.msg) {
            Some(Msg::Started(s)) => id = s.id,
            Some(Msg::Stdout(b)) if b.starts_with(b"ready") => return (stream, tx, id),
            Some(_) => {}
            None => panic!("the stream ended before the command ran"),
        }
    }
}

/// A uid holds at most 32 attach streams (over any sandboxes): the 33rd is
/// refused, and recorded, while another uid still attaches; a stream
/// closed gives its place back.
#[tokio::test(flavor = "multi_thread")]
async fn attach_streams_are_bounded_per_uid() {
    use sandbox_proto::v1::{sandbox_client::SandboxClient, AttachRequest};
    let d = Daemon::start_with(
        "admin_group = \"4343\"\n",
        &[("rooty", "extends = \"workspace\"\nallow_root = true\n")],
    );
    let ws = workspace();
    let mut sandboxes = Vec::new();
    for _ in 0..3 {
        sandboxes.push(running(&d, ws.path(), "echo ready; sleep 300").await);
    }
    let mut root = SandboxClient::new(d.channel().await);
    let attach = |id: &str| AttachRequest { id: id.to_string() };
    let mut held = Vec::new();
    for i in 0..32 {
        // At most 16 on one sandbox.
        let id = &sandboxes[i / 16].2;
        held.push(root.attach(attach(id)).await.unwrap().into_inner());
    }
    let third = &sandboxes[2].2;
    let e = root.attach(attach(third)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("attach streams"), "{}", e.message());
    let mut admin = SandboxClient::new(d.channel_as(1000, &[1000, 4343]).await);
    admin.attach(attach(third)).await.unwrap();
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match root.attach(attach(third)).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                assert!(Instant::now() < deadline, "a closed attach kept its place");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let log = std::fs::read_to_string(d._dir.path().join("state/audit.jsonl")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"rule\":\"attach_streams\"")),
        "no refusal recorded"
    );
}

/// Attachers that stop reading do not keep their sandbox's output ring
/// once it has ended: waves of sandboxes that fill their rings, each with
/// an attacher that never reads, leave the daemon about as large after the
/// first wave as after the last (each wave's rings let go, their memory
/// taken again by the next); each attach still ends with the exit.
#[tokio::test(flavor = "multi_thread")]
async fn attachers_that_do_not_read_let_go_of_ended_sandboxes() {
    use sandbox_proto::v1::{
        exec_request::Msg as In, exec_response::Msg, sandbox_client::SandboxClient, AttachRequest,
        ExecRequest,
    };
    const WAVES: usize = 4;
    const PER_WAVE: usize = 8;
    let d = Daemon::start(&[("rooty", "extends = \"workspace\"\nallow_root = true\n")]);
    let ws = workspace();
    let pid = d.child.id();
    let mut after_first = 0;
    let mut attached = Vec::new();
    for wave in 0..WAVES {
        for _ in 0..PER_WAVE {
            // 6 MiB in 64 KiB writes: more than a ring holds.
            let script = "echo ready; read go; dd if=/dev/zero bs=64K count=96 2>/dev/null; exit 5";
            let (mut stream, tx, id) = running(&d, ws.path(), script).await;
            // A connection each, whose window only its attacher fills.
            let attach = SandboxClient::new(d.channel().await)
                .attach(AttachRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            tx.send(ExecRequest {
                msg: Some(In::Stdin(b"go\n".to_vec())),
            })
            .await
            .unwrap();
            let exit = exit_of(&mut stream).await;
            assert_eq!(exit.expect("no exit").code, 5);
            attached.push(attach);
        }
        // The attachers' time to catch up runs out.
        tokio::time::sleep(Duration::from_secs(4)).await;
        if wave == 0 {
            after_first = vm_rss(pid);
        }
    }
    let growth = vm_rss(pid).saturating_sub(after_first);
    eprintln!("grew {} KiB after the first wave", growth >> 10);
    d.assert_none_listed().await;
    for (i, mut a) in attached.into_iter().enumerate() {
        let mut exit = None;
        let mut n = 0;
        let read = async {
            while let Some(m) = a.message().await.unwrap() {
                n += 1;
                if let Some(Msg::Exit(e)) = m.msg {
                    exit = Some(e);
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .is_err()
        {
            panic!("attach {i} did not end: {n} messages, exit {exit:?}");
        }
        assert_eq!(exit.expect("an attach ended without the exit").code, 5);
    }
    // Each wave's rings, if kept, would be 8 x 4 MiB.
    assert!(
        growth < 40 << 20,
        "the daemon grew by {} MiB over {} more waves of ended sandboxes",
        growth >> 20,
        WAVES - 1
    );
}

/// Reads `stream` to its end; its exit, if it sent one.
async fn exit_of(
    stream: &mut tonic::Streaming<sandbox_proto::v1::ExecResponse>,
) -> Option<sandbox_proto::v1::ExecExit> {
    let mut exit = None;
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(sandbox_proto::v1::exec_response::Msg::Exit(e)) = m.msg {
            exit = Some(e);
        }
    }
    exit
}

/// The records of `kind` for exec `id` in the daemon's audit log.
fn ends_of(d: &Daemon, id: &str) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(d._dir.path().join("state/audit.jsonl")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "exec-end" && r["id"] == id)
        .collect()
}

/// Starts `yes` under "rooty" with `timeout_ms` and reads only until it
/// runs; the stream, never read again, and the exec's id.
async fn unread_yes(
    d: &Daemon,
    ws: &Path,
    timeout_ms: u64,
) -> (
    tonic::Streaming<sandbox_proto::v1::ExecResponse>,
    tokio::sync::mpsc::Sender<sandbox_proto::v1::ExecRequest>,
    String,
) {
    use sandbox_proto::v1::{
        exec_request::Msg as In, exec_response::Msg, sandbox_client::SandboxClient,
    };
    let mut client = SandboxClient::new(d.channel().await);
    let mut start = exec_start("rooty", ws, &["/bin/sh", "-c", "echo ready; exec yes"]);
    if let Some(In::Start(s)) = start.msg.as_mut() {
        s.timeout_ms = timeout_ms;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut stream = client
        .exec(with_start(start, rx))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().and_then(|m| m.msg) {
        Some(Msg::Started(s)) => (stream, tx, s.id),
        other => panic!("not started: {other:?}"),
    }
}

/// A client that stops reading does not hold up its exec's end: the
/// timeout ends the command, and its end is on record and the exec gone
/// from the list within moments while the client still holds the unread
/// stream. Its place under `max_per_user` is taken until the client lets
/// go of that output (what waits for slow clients stays bounded). A daemon
/// stopped meanwhile writes the end of such an exec before it exits.
#[tokio::test(flavor = "multi_thread")]
async fn an_exec_whose_client_stops_reading_is_recorded_ended_at_once() {
    use sandbox_proto::v1::sandbox_client::SandboxClient;
    let mut d = Daemon::start_with(
        "[limits]\nmax_per_user = 1\n",
        &[("rooty", "extends = \"workspace\"\nallow_root = true\n")],
    );
    let ws = workspace();
    let (stream, tx, id) = unread_yes(&d, ws.path(), 2000).await;
    let deadline = Instant::now() + Duration::from_secs(6);
    while ends_of(&d, &id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no exec-end 6 s after a 2 s timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = &ends_of(&d, &id)[0];
    assert_eq!(end["timed_out"], true, "{end}");
    assert!(end["usage"]["output_bytes"].as_u64().unwrap() > 0, "{end}");
    d.assert_none_listed().await;
    let mut client = SandboxClient::new(d.channel().await);
    let true_ = || tokio_stream::iter(vec![exec_start("rooty", ws.path(), &["/bin/true"])]);
    let e = client.exec(true_()).await.unwrap_err();
    assert!(e.message().contains("max_per_user"), "{e:?}");
    drop((stream, tx));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next = loop {
        match client.exec(true_()).await {
            Ok(s) => break s.into_inner(),
            Err(e) => assert!(Instant::now() < deadline, "still refused: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    while next.message().await.unwrap().is_some() {}

    // No timeout: the daemon's stop ends it (admitted once the first
    // client let go).
    let (_stream, _tx, id) = unread_yes(&d, ws.path(), 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::spawn_blocking(move || (d.stop(), d))
        .await
        .unwrap();
    assert!(status.0.success(), "{}", status.0);
    let ends = ends_of(&status.1, &id);
    assert_eq!(
        ends.len(),
        1,
        "the stopped daemon did not record the end of {id}"
    );
    assert_eq!(ends[0]["signal"], libc::SIGKILL, "{}", ends[0]);
}

/// A response built and not yet read by its client holds its request's
/// place (here a List of profiles of 100 KB, read a byte at a time: all
/// of it is built, little sent): a caller cannot make the daemon keep
/// more of them than it may have requests open. Given up on, they free
/// their places.
#[tokio::test(flavor = "multi_thread")]
async fn an_unread_response_holds_its_requests_place() {
    use sandbox_proto::v1::{sandbox_client::SandboxClient, ListProfilesRequest};
    let long = format!(
        "extends = \"workspace\"\ndescription = \"{}\"\n",
        "d".repeat(100_000)
    );
    let d = Daemon::start(&[("long", &long)]);
    let mut channels = Vec::new();
    for _ in 0..MAX_REQUESTS / 32 {
        channels.push(d.slow_channel().await);
    }
    let (refused, slow) = hold_until_refused(&d, |i| {
        let mut client = SandboxClient::new(channels[i / 32].clone());
        tokio::spawn(async move { client.list_profiles(ListProfilesRequest {}).await })
    })
    .await;
    assert!(refused.message().contains("uid 0"), "{refused:?}");
    for s in &slow {
        s.abort();
    }
    drop(channels);
    served_within(&d, Duration::from_secs(8)).await;
}

/// The requests one caller has open at once are bounded over all its
/// connections (each may hold a message being received): past the bound a
/// call is refused at once, naming it, while another uid is served; an
/// Exec that sends no ExecStart ends after its wait and gives its place back.
#[tokio::test(flavor = "multi_thread")]
async fn requests_open_at_once_are_bounded_per_uid() {
    use sandbox_proto::v1::sandbox_client::SandboxClient;
    let d = Daemon::start(&[]);
    let mut channels = Vec::new();
    // Several streams on a connection.
    for _ in 0..MAX_REQUESTS / 32 {
        channels.push(d.channel().await);
    }
    let mut senders = Vec::new();
    let (refused, waiting) = hold_until_refused(&d, |i| {
        let mut client = SandboxClient::new(channels[i / 32].clone());
        let (tx, rx) = tokio::sync::mpsc::channel::<sandbox_proto::v1::ExecRequest>(1);
        senders.push(tx);
        tokio::spawn(async move {
            client
                .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        })
    })
    .await;
    assert!(refused.message().contains("uid 0"), "{refused:?}");
    list_profiles(d.channel_as(1000, &[]).await)
        .await
        .expect("another uid is refused");
    // The Execs without a start end, and root is served again.
    for w in waiting {
        let e = w.await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    }
    served_within(&d, Duration::from_secs(8)).await;
    drop(senders);
}

/// Requests one uid may have open at once.
const MAX_REQUESTS: usize = 128;

/// Opens [`MAX_REQUESTS`] calls of root's with `open` (given each one's
/// index) and keeps them open until root's next call is refused; returns
/// that refusal and the calls. A call refused on the way is opened again:
/// a call that has just ended may hold its place a moment longer, until
/// the daemon drops its response.
async fn hold_until_refused<T: Send + 'static>(
    d: &Daemon,
    mut open: impl FnMut(usize) -> tokio::task::JoinHandle<Result<T, tonic::Status>>,
) -> (
    tonic::Status,
    Vec<tokio::task::JoinHandle<Result<T, tonic::Status>>>,
) {
    let mut held: Vec<_> = (0..MAX_REQUESTS).map(&mut open).collect();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        match list_profiles(d.channel().await).await {
            Err(e) if e.code() == tonic::Code::ResourceExhausted => return (e, held),
            other => assert!(Instant::now() < deadline, "still served: {other:?}"),
        }
        for (i, call) in held.iter_mut().enumerate() {
            if call.is_finished() {
                let ended = std::mem::replace(call, open(i)).await.unwrap();
                match ended {
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => {}
                    other => panic!("a held call ended: {:?}", other.err()),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `wait`) until a call of root's is served.
async fn served_within(d: &Daemon, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Err(e) = list_profiles(d.channel().await).await {
        assert!(Instant::now() < deadline, "still refused: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One ListProfiles call on `ch`.
async fn list_profiles(
    ch: tonic::transport::Channel,
) -> Result<tonic::Response<sandbox_proto::v1::ListProfilesResponse>, tonic::Status> {
    sandbox_proto::v1::sandbox_client::SandboxClient::new(ch)
        .list_profiles(sandbox_proto::v1::ListProfilesRequest {})
        .await
}
