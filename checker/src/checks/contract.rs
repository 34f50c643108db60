//! The binary contract every step keeps: the command runs with stdio passed
//! through, its exit status comes back, signals reach it, and the runtime's
//! own errors are one line and exit 125.

use std::time::Duration;

use super::{every_step, expect, expect_stdout, fail, Check, Failure, Kind, Outcome};
use crate::host::{descendants, processes_running, sleeper};
use crate::run::{host, poll, As, Output, Running, Target};

pub fn checks() -> Vec<Check> {
    let check = |name, proves, run| Check { name, layer: 1, kind: Kind::Contract, proves, applies: every_step, rootless: true, run };
    vec![
        check("runs-the-command", "COMMAND runs and its stdout comes through", runs_the_command),
        check("exit-status", "COMMAND's exit status is the runtime's", exit_status),
        check("killed-by-signal", "a container killed by SIGKILL gives 137 (128 + 9)", killed_by_signal),
        check("command-not-found", "a missing COMMAND gives 127 and one line naming it", command_not_found),
        check("cannot-execute", "a COMMAND that is not executable gives 126", cannot_execute),
        check("bad-input", "bad options give 125 and one line on stderr, no panic", bad_input),
        check("stdio-pass-through", "stdin, stdout and stderr are the runtime's own", stdio_pass_through),
        check("shell-on-stdin", "a shell reads commands from stdin", shell_on_stdin),
        check("terminal", "run from a terminal, COMMAND has the terminal", terminal),
        check("signals-forwarded", "SIGTERM and SIGINT sent to the runtime reach COMMAND", signals_forwarded),
        check("dies-with-runtime", "if the runtime is SIGKILLed, the container dies too", dies_with_runtime),
        Check {
            name: "needs-root",
            layer: 1,
            kind: Kind::Contract,
            proves: "started by an unprivileged user, it says it needs root and exits 125",
            // From 05 on a user namespace makes root unnecessary; 07 and 08
            // need it again for the host's network and cgroups.
            applies: |step| !(5..=6).contains(&step) && step < 9,
            rootless: false,
            run: needs_root,
        },
    ]
}

fn runs_the_command(t: &Target) -> Outcome {
    let out = t.run(&["echo", "hello from inside"]);
    expect_stdout(&out, "hello from inside", "fork (clone) a child, and exec the command in it with execvp")
}

fn exit_status(t: &Target) -> Outcome {
    let out = t.run(&["sh", "-c", "exit 42"]);
    expect(out.status == Some(42), &out, "exit 42", "waitpid() the child and exit with WaitStatus::Exited's code")
}

fn killed_by_signal(t: &Target) -> Outcome {
    let sleeper = sleeper(1001);
    let (running, pid) = start_and_find(t, &[&sleeper[0], &sleeper[1]])?;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = running.finish(Duration::from_secs(5));
    let out = Output { ran: format!("{}, then kill -KILL <the container's host PID>", out.ran), ..out };
    expect(out.status == Some(137), &out, "exit 137", "WaitStatus::Signaled(_, signal, _) means exit 128 + signal")
}

/// Starts `argv` in a container and finds its PID on the host, below the runtime.
fn start_and_find(t: &Target, argv: &[&str]) -> Result<(Running, i32), Failure> {
    let ran = t.describe(argv, t.who);
    let running = t.spawn(argv).map_err(|err| Failure::new(&ran, "it starts", format!("{err:#}"), ""))?;
    let found = poll(Duration::from_secs(5), || {
        descendants(running.pid()).into_iter().find(|(_, cmd)| cmd == argv).map(|(pid, _)| pid)
    });
    match found {
        Some(pid) => Ok((running, pid)),
        None => {
            let out = running.finish(Duration::from_secs(1));
            let expected = format!("a `{}` process below the runtime", argv.join(" "));
            Err(Failure::of(&out, expected, "the command should run as a child of the runtime"))
        }
    }
}

fn command_not_found(t: &Target) -> Outcome {
    let out = t.run(&["ctlab-no-such-command"]);
    let ok = out.status == Some(127) && one_line(&out.stderr) && out.stderr.contains("ctlab-no-such-command");
    expect(ok, &out, "exit 127 and one line on stderr naming the command", "execvp failing with ENOENT means 127")
}

fn cannot_execute(t: &Target) -> Outcome {
    let out = t.run(&["/etc/passwd"]);
    let ok = out.status == Some(126) && one_line(&out.stderr);
    expect(ok, &out, "exit 126 and one line on stderr", "execvp failing with EACCES (not executable) means 126")
}

fn bad_input(t: &Target) -> Outcome {
    let cases: [&[&str]; 3] = [&["--hostname", "not a hostname!", "true"], &["--no-such-option", "true"], &[]];
    for args in cases {
        let out = t.run(args);
        let line = out.stderr.trim();
        let ok = out.status == Some(125)
            && one_line(&out.stderr)
            && line.starts_with(&format!("{}:", t.program()))
            && !line.contains("panicked");
        let expected = format!("exit 125 and one line on stderr starting with '{}:'", t.program());
        expect(ok, &out, expected, "parse with Cli::try_parse() and turn clap's error into one line, exit 125")?;
    }
    Ok(())
}

fn stdio_pass_through(t: &Target) -> Outcome {
    let out = t.run_stdin(&["sh", "-c", "cat; echo to-stderr >&2"], b"from-stdin\n");
    let ok = out.status == Some(0) && out.stdout_trimmed() == "from-stdin" && out.stderr.trim() == "to-stderr";
    expect(ok, &out, "stdout \"from-stdin\", stderr \"to-stderr\"", "don't redirect the child's fds 0, 1 and 2: it inherits them")
}

fn shell_on_stdin(t: &Target) -> Outcome {
    let out = t.run_stdin(&["sh"], b"echo $((6 * 7))\nexit 5\n");
    let ok = out.status == Some(5) && out.stdout_trimmed() == "42";
    expect(ok, &out, "stdout \"42\", exit 5", "stdin must reach the command")
}

fn terminal(t: &Target) -> Outcome {
    let inner = match t.shell_command(&["sh", "-c", "test -t 0 && test -t 1 && echo on-a-terminal"]) {
        Ok(command) => command,
        Err(err) => return fail("script", "it starts", format!("{err:#}"), ""),
    };
    let out = host("script", &["--quiet", "--return", "--command", &inner, "/dev/null"]);
    let ok = out.status == Some(0) && out.stdout.contains("on-a-terminal");
    expect(ok, &out, "COMMAND sees a terminal on stdin and stdout", "keep the terminal: no setsid(), no redirection")
}

fn signals_forwarded(t: &Target) -> Outcome {
    for (signal, name, code) in [(libc::SIGTERM, "TERM", 7), (libc::SIGINT, "INT", 8)] {
        let script = format!("trap 'echo got-{name}; exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        let args = ["sh", "-c", &script];
        let ran = t.describe(&args, t.who);
        let mut running = t.spawn(&args).map_err(|err| Failure::new(&ran, "it starts", format!("{err:#}"), ""))?;
        if running.wait_for_stdout("ready", Duration::from_secs(5)) {
            unsafe { libc::kill(running.pid(), signal) };
        }
        let out = running.finish(Duration::from_secs(5));
        let out = Output { ran: format!("{}, then kill -{name} <runtime>", out.ran), ..out };
        let ok = out.status == Some(code) && out.stdout.contains(&format!("got-{name}"));
        let hint = "install a handler for SIGTERM/SIGINT in the runtime that kill()s the container with the same signal";
        expect(ok, &out, format!("stdout \"got-{name}\", exit {code}"), hint)?;
    }
    Ok(())
}

fn dies_with_runtime(t: &Target) -> Outcome {
    let sleeper = sleeper(1004);
    let sleeper = [sleeper[0].as_str(), sleeper[1].as_str()];
    let (running, _) = start_and_find(t, &sleeper)?;
    unsafe { libc::kill(running.pid(), libc::SIGKILL) };
    let out = running.finish(Duration::from_secs(5));
    let gone = poll(Duration::from_secs(3), || processes_running(&sleeper).is_empty().then_some(()));
    for pid in processes_running(&sleeper) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let ran = format!("{}, then kill -KILL <runtime>", out.ran);
    let hint = "in the child, prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills it when its parent dies";
    match gone {
        Some(()) => Ok(()),
        None => fail(&ran, "no `sleep` left on the host", "the container's `sleep` still running after 3 s", hint),
    }
}

fn needs_root(t: &Target) -> Outcome {
    let out = t.run_as(&["true"], As::Nobody);
    let ok = out.status == Some(125) && one_line(&out.stderr) && out.stderr.to_lowercase().contains("root");
    let hint = match t.step {
        1..=4 => "clone() fails with EPERM without CAP_SYS_ADMIN: say it needs root (sudo), exit 125",
        _ => "the veth's host end (07) and the host's cgroups (08) need root: check geteuid() first, say so, exit 125",
    };
    expect(ok, &out, "exit 125 and one line saying it needs root", hint)
}

/// Exactly one non-empty line.
pub fn one_line(text: &str) -> bool {
    let text = text.trim_end();
    !text.is_empty() && !text.contains('\n')
}
