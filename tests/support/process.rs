//! Processes a test starts never outlive it. Three ways, by how long the process must live:
//!
//! - for the test: kill it when its owner is dropped (the test ended, passed or panicked), and
//!   have the kernel kill it if the whole test process dies first (`dies_with_spawning_thread`);
//! - for the test process (a server kept in a `static`, which is never dropped): give it a pipe
//!   as stdin that only this process holds open, and have it exit at end of file
//!   (`tests/boot/httpd.py --stop-on-stdin-eof`, `tests/boot/run-vm.sh --stop-on-stdin-eof`);
//! - daemons started by a script (`OnExit`): a waiting shell runs the script's stop command
//!   when its owner is dropped or the test process ends.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, Command, Output, Stdio};

/// A child that is killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Has the kernel send SIGKILL to `cmd`'s process when the thread that spawns it exits, as it
/// does when the test process is killed. Only for a child whose owner lives on the spawning
/// thread (a test's local): the signal follows the thread, not the process, so a child kept
/// in a `static` or spawned from a pooled thread would be killed too early.
pub fn dies_with_spawning_thread(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory shared with the parent. The
    // parent thread cannot have exited before the call: it waits in spawn until exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
    }
}

/// Runs a command when dropped or, if never dropped, when the test process exits however it
/// ends: a shell blocked reading a pipe that only this process holds open runs it at end of
/// file. In its own process group, so a Ctrl-C meant for the tests does not stop it first.
pub struct OnExit {
    shell: Child,
    lifeline: Option<ChildStdin>,
}

impl OnExit {
    pub fn run(program: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> OnExit {
        let mut shell = Command::new("bash")
            .args(["-c", "while read -r _; do :; done; exec \"$@\"", "on-exit"])
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("bash runs");
        let lifeline = shell.stdin.take();
        OnExit { shell, lifeline }
    }
}

impl Drop for OnExit {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = self.shell.wait();
    }
}

/// Runs `cmd` with `input` on its stdin, and waits for its output.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("command finishes")
}

/// stdout of a command that must succeed; panics with its stderr when it did not.
pub fn stdout_of(what: impl std::fmt::Display, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
