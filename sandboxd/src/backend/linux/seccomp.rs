//! The seccomp filter installed as the command's last step before exec. It
//! allows by default and refuses (EPERM) the system calls that reach kernel
//! surfaces a confined command has no business with: debugging other
//! processes, mounts and namespaces, kernel modules and kexec, BPF, perf,
//! keyrings, io_uring and Linux AIO, userfaultfd, terminal input
//! injection, exotic socket families, the setuid mode bit (a program the
//! command leaves set-user-ID would let any other user on the host act as
//! the caller) and the setgid bit on files it creates (on an existing file
//! a filter cannot tell a directory, where git and `cp -a` set it, from a
//! program), and any call through a foreign ABI (i386 `int 0x80`, x32).
//! `clone3` gets ENOSYS: its flags sit in memory a filter cannot read, and
//! the C library falls back to `clone`, whose flags are checked; so does
//! `openat2`, whose mode sits in memory too (callers fall back to `openat`).

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the seccomp filter is written for x86_64 and aarch64 only");

/// A seccomp step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("build seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("install seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

/// The compiled filter: built once before fork, installed in the command child.
#[derive(Debug, Clone)]
pub struct Filter(BpfProgram);

#[cfg(target_arch = "x86_64")]
mod native {
    pub const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    /// AUDIT_ARCH_X86_64: EM_X86_64 | 64-bit | little endian.
    pub const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// Syscall numbers at or above this are the x32 ABI.
    pub const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
    /// `io_pgetevents`, which the libc crate does not name.
    pub const SYS_IO_PGETEVENTS: libc::c_long = 333;
}

#[cfg(target_arch = "aarch64")]
mod native {
    pub const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
    /// AUDIT_ARCH_AARCH64: EM_AARCH64 | 64-bit | little endian.
    pub const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
    /// aarch64 has no syscall-number-encoded second ABI (AArch32 has its own arch value).
    pub const X32_SYSCALL_BIT: Option<u32> = None;
    /// `io_pgetevents`, which the libc crate does not name.
    pub const SYS_IO_PGETEVENTS: libc::c_long = 292;
}

/// Flags that make `clone` create namespaces (CLONE_NEWTIME is left out:
/// for `clone` its bit is part of the exit signal, and only clone3/unshare take it).
const CLONE_NEW_FLAGS: [i32; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// Socket families the command may create.
const SOCKET_FAMILIES: [i32; 3] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// personality() values allowed: the default, 32-bit uname, the 2.6 uname
/// compatibility and the query; anything else (e.g. READ_IMPLIES_EXEC) is refused.
const PERSONALITIES: [u64; 5] = [0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// System calls refused whatever their arguments.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Linux AIO: its contexts come from one host-wide pool (fs.aio-max-nr)
    // that a sandbox could fill for every other user.
    libc::SYS_io_setup,
    libc::SYS_io_destroy,
    libc::SYS_io_submit,
    libc::SYS_io_cancel,
    libc::SYS_io_getevents,
    native::SYS_IO_PGETEVENTS,
    libc::SYS_userfaultfd,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    // The kernel log: readable by anyone where kernel.dmesg_restrict is 0.
    libc::SYS_syslog,
];

// Classic BPF opcodes (linux/filter.h) for the hand-written prefix.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Offsets in struct seccomp_data.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The prefix seccompiler cannot express: refuse foreign ABIs with EPERM
/// (its own arch check would kill instead) and answer clone3 and openat2
/// with ENOSYS.
fn prefix() -> BpfProgram {
    let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut p = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JEQ_K, native::AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, eperm),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    if let Some(bit) = native::X32_SYSCALL_BIT {
        p.push(jump(BPF_JGE_K, bit, 0, 1));
        p.push(stmt(BPF_RET_K, eperm));
    }
    for nr in [libc::SYS_clone3, libc::SYS_openat2] {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    p
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    // Every argument checked here is an int in the kernel: compare 32 bits so
    // garbage in the upper half cannot dodge a match.
    Ok(SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        op,
        value,
    )?)
}

/// The argument-dependent rules, each a list of alternatives.
fn argument_rules() -> Result<Vec<(libc::c_long, Vec<SeccompRule>)>, SeccompError> {
    let clone = CLONE_NEW_FLAGS
        .iter()
        .map(|&f| {
            let f = f as u32 as u64;
            Ok(SeccompRule::new(vec![cond(
                0,
                SeccompCmpOp::MaskedEq(f),
                f,
            )?])?)
        })
        .collect::<Result<Vec<_>, SeccompError>>()?;
    let ioctl = [libc::TIOCSTI, libc::TIOCLINUX]
        .iter()
        .map(|&req| {
            Ok(SeccompRule::new(vec![cond(
                1,
                SeccompCmpOp::Eq,
                req as u32 as u64,
            )?])?)
        })
        .collect::<Result<Vec<_>, SeccompError>>()?;
    let family = || -> Result<Vec<SeccompRule>, SeccompError> {
        let other = SOCKET_FAMILIES
            .iter()
            .map(|&f| cond(0, SeccompCmpOp::Ne, f as u64))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(vec![SeccompRule::new(other)?])
    };
    let personality = PERSONALITIES
        .iter()
        .map(|&p| cond(0, SeccompCmpOp::Ne, p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rules = vec![
        (libc::SYS_clone, clone),
        (libc::SYS_ioctl, ioctl),
        (libc::SYS_socket, family()?),
        (libc::SYS_socketpair, family()?),
        (libc::SYS_personality, vec![SeccompRule::new(personality)?]),
    ];
    for (nr, arg) in CHMODS {
        rules.push((nr, mode_bits(arg, &[libc::S_ISUID])?));
    }
    for (nr, arg) in CREATES {
        rules.push((nr, mode_bits(arg, &[libc::S_ISUID, libc::S_ISGID])?));
    }
    Ok(rules)
}

/// The calls that change a file's mode, and which argument holds it.
#[cfg(target_arch = "x86_64")]
const CHMODS: [(libc::c_long, u8); 4] = [
    (libc::SYS_chmod, 1),
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (libc::SYS_fchmodat2, 2),
];
#[cfg(target_arch = "aarch64")]
const CHMODS: [(libc::c_long, u8); 3] = [
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (libc::SYS_fchmodat2, 2),
];

/// The calls that create a file with a mode, and which argument holds it
/// (C libraries pass 0 as the mode of an `open` that creates nothing).
#[cfg(target_arch = "x86_64")]
const CREATES: [(libc::c_long, u8); 5] = [
    (libc::SYS_open, 2),
    (libc::SYS_creat, 1),
    (libc::SYS_openat, 3),
    (libc::SYS_mknod, 1),
    (libc::SYS_mknodat, 2),
];
#[cfg(target_arch = "aarch64")]
const CREATES: [(libc::c_long, u8); 2] = [(libc::SYS_openat, 3), (libc::SYS_mknodat, 2)];

/// Matches a mode argument with any of `bits`.
fn mode_bits(arg: u8, bits: &[libc::mode_t]) -> Result<Vec<SeccompRule>, SeccompError> {
    bits.iter()
        .map(|&bit| {
            let bit = u64::from(bit);
            Ok(SeccompRule::new(vec![cond(
                arg,
                SeccompCmpOp::MaskedEq(bit),
                bit,
            )?])?)
        })
        .collect()
}

impl Filter {
    /// Compiles the filter for the native architecture.
    pub fn build() -> Result<Filter, SeccompError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
        rules.extend(argument_rules()?);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            native::ARCH,
        )?;
        let body: BpfProgram = filter.try_into()?;
        let mut program = prefix();
        program.extend(body);
        Ok(Filter(program))
    }

    /// Installs the filter on the calling thread (setting no_new_privs, which
    /// unprivileged seccomp requires). Must be the last step before exec.
    pub fn install(&self) -> Result<(), SeccompError> {
        Ok(seccompiler::apply_filter(&self.0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_prefix_first() {
        let filter = Filter::build().expect("filter builds");
        assert_eq!(filter.0[..prefix().len()], prefix()[..]);
        assert!(filter.0.len() < 4096);
    }
}
