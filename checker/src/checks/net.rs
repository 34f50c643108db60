//! Layer 07: a network namespace with lo and eth0, an address and a default
//! route, a veth to the host that both sides can ping across, names that
//! never clash, and a host end that goes away with the container.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::{every_step, expect, fail, in_new_namespace, Check, Failure, Kind, Outcome};
use crate::run::{host, poll, Output, Running, Target};

pub fn checks() -> Vec<Check> {
    let check = |name, kind, proves, run| Check { name, layer: 7, kind, proves, applies: every_step, rootless: false, run };
    vec![
        check("net-namespace", Kind::Isolation, "the container is in a network namespace of its own", net_namespace),
        check("lo-and-eth0-up", Kind::Isolation, "inside, exactly lo and eth0, both up", lo_and_eth0_up),
        check("address-and-default-route", Kind::Isolation, "eth0 has an IPv4 address and the default route goes via the host end", address_and_default_route),
        check("container-pings-host", Kind::Isolation, "the container pings the host end of its veth", container_pings_host),
        check("host-pings-container", Kind::Isolation, "the host pings the container's address", host_pings_container),
        check("two-at-once", Kind::Isolation, "two containers at once get distinct host ends and both ping theirs", two_at_once),
        Check { applies: super::before_engine, ..check("ip-option", Kind::Isolation, "--ip ADDR/PREFIX sets the container's address; the host end is in that subnet", ip_option) },
        Check { applies: super::before_engine, ..check("bad-ip-refused", Kind::Contract, "a malformed --ip gives 125 and one line", bad_ip_refused) },
        check("host-end-removed", Kind::Contract, "the host end is gone after exit, a failed start, SIGTERM and SIGKILL", host_end_removed),
    ]
}

const GATEWAY: &str = "$(ip route | awk '/^default/ {print $3}')";

fn net_namespace(t: &Target) -> Outcome {
    in_new_namespace(t, "net", "add CloneFlags::CLONE_NEWNET to the clone() flags")
}

fn lo_and_eth0_up(t: &Target) -> Outcome {
    let out = t.run(&["ip", "-o", "link"]);
    let links: Vec<(&str, bool)> = out.stdout.lines().filter_map(|l| {
        let name = l.split(": ").nth(1)?.split('@').next()?;
        Some((name, l.contains(",UP") || l.contains("<UP")))
    }).collect();
    let ok = out.status == Some(0) && links.len() == 2 && links.iter().all(|(name, up)| ["lo", "eth0"].contains(name) && *up);
    expect(ok, &out, "two links, lo and eth0, both UP", "set lo and eth0 up from inside, over netlink (IFF_UP in a SetLink message)")
}

fn address_and_default_route(t: &Target) -> Outcome {
    let (running, address) = start_waiting(t, &["--hostname", "ctlab-route"], "ip route")?;
    let name = gateway_interface(t, &running);
    let inside = running.stdout_so_far();
    let gateway = inside.lines().find_map(|l| l.strip_prefix("default via ")?.split_whitespace().next().map(String::from));
    let host_side = host("ip", &["-o", "-4", "addr", "show", "dev", &name]);
    running.kill_container();
    let out = running.finish(Duration::from_secs(5));
    let host_end_address = inet_address(&host_side.stdout);
    let ok = gateway.is_some() && gateway == host_end_address.map(|(a, _)| a.to_string()) && address != host_end_address.map_or(address, |(a, _)| a);
    let out = Output { stdout: format!("{}[checker: the host's {name}: {:?}]", out.stdout, host_side.stdout.trim()), ..out };
    let hint = "add the address to eth0 and a default route via the host end's address (RTA_GATEWAY), from inside";
    expect(ok, &out, format!("an address on eth0 and `default via <{name}'s address> dev eth0`"), hint)
}

fn container_pings_host(t: &Target) -> Outcome {
    let out = t.run(&["sh", "-c", &format!("ping -c 1 -W 2 {GATEWAY}")]);
    expect(out.status == Some(0), &out, "exit 0 (one reply)", "the host end needs its address and must be up, in the same subnet as eth0")
}

/// The first `inet A.B.C.D/N` in `ip addr` output, as (address, prefix).
fn inet_address(text: &str) -> Option<(Ipv4Addr, u8)> {
    let word = text.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    let (address, prefix) = word.split_once('/')?;
    Some((address.parse().ok()?, prefix.parse().ok()?))
}

/// Starts a container that prints its address (and what `also` prints),
/// then "ready", then sleeps.
fn start_waiting(t: &Target, extra: &[&str], also: &str) -> Result<(Running, Ipv4Addr), Failure> {
    let script = format!("ip -4 -o addr show eth0; {also}; echo ready; exec sleep 1006");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["sh", "-c", &script]);
    let ran = t.describe(&args, t.who);
    let mut running = t.spawn(&args).map_err(|err| Failure::new(&ran, "it starts", format!("{err:#}"), ""))?;
    let ready = running.wait_for_stdout("ready", Duration::from_secs(10));
    match inet_address(&running.stdout_so_far()) {
        Some((address, _)) if ready => Ok((running, address)),
        _ => Err(Failure::of(&running.finish(Duration::from_secs(2)), "eth0's address, then \"ready\"", "configure eth0 before exec")),
    }
}

fn host_pings_container(t: &Target) -> Outcome {
    let (running, address) = start_waiting(t, &[], "true")?;
    let name = gateway_interface(t, &running);
    let route = host("ip", &["route", "get", &address.to_string()]);
    let out = host("ping", &["-c", "1", "-W", "2", &address.to_string()]);
    running.kill_container();
    let _ = running.finish(Duration::from_secs(5));
    let via_veth = route.stdout.contains(&format!("dev {name}"));
    let out = Output { stdout: format!("{}[checker: ip route get {address}: {:?}]", out.stdout, route.stdout.trim()), ..out };
    let ok = out.status == Some(0) && via_veth;
    expect(ok, &out, format!("a reply, through {name}"), "the host end must be up with an address in the container's subnet")
}

fn host_end(t: &Target, runtime: &Running) -> String {
    t.host_end(runtime.pid())
}

/// Where the container's gateway address lives on the host: the veth's
/// host end, or in mini-docker the bridge it is plugged into.
fn gateway_interface(t: &Target, runtime: &Running) -> String {
    if t.is_engine() { "minidocker0".into() } else { host_end(t, runtime) }
}

fn host_has(interface: &str) -> bool {
    Path::new("/sys/class/net").join(interface).exists()
}

fn two_at_once(t: &Target) -> Outcome {
    let (first, _) = start_waiting(t, &[], "true")?;
    let (second, _) = start_waiting(t, &[], "true")?;
    let names = [host_end(t, &first), host_end(t, &second)];
    let both_there = names.iter().all(|n| host_has(n));
    let pings: Vec<Output> = (0..2).map(|_| t.run(&["sh", "-c", &format!("ping -c 1 -W 2 {GATEWAY}")])).collect();
    for running in [first, second] {
        running.kill_container();
        let _ = running.finish(Duration::from_secs(5));
    }
    if !both_there {
        return fail("two containers at once", &format!("host interfaces {names:?} while both run"), "not both", "name the host end after something unique per container, e.g. the runtime's PID");
    }
    for out in &pings {
        expect(out.status == Some(0), out, "exit 0 while another container runs", "each container's subnet must differ, or the host cannot route to both")?;
    }
    Ok(())
}

fn ip_option(t: &Target) -> Outcome {
    let out = t.run(&["--ip", "10.123.45.6/24", "sh", "-c", "ip -4 -o addr show eth0; ping -c 1 -W 2 10.123.45.1"]);
    let ok = out.status == Some(0) && inet_address(&out.stdout) == Some((Ipv4Addr::new(10, 123, 45, 6), 24));
    expect(ok, &out, "inet 10.123.45.6/24 on eth0, and the host end 10.123.45.1 answers", "use --ip for eth0 and the subnet's first address for the host end")
}

fn bad_ip_refused(t: &Target) -> Outcome {
    for ip in ["10.1.2.3/31", "not-an-address/24", "10.1.2.0/24", "10.1.2.3"] {
        let out = t.run(&["--ip", ip, "true"]);
        let ok = out.status == Some(125) && super::contract::one_line(&out.stderr);
        expect(ok, &out, "exit 125 and one line", "check --ip in clap's value_parser: ADDR/PREFIX, prefix 1-30, a host address")?;
    }
    Ok(())
}

fn host_end_removed(t: &Target) -> Outcome {
    let gone = |name: &str| poll(Duration::from_secs(5), || (!host_has(name)).then_some(())).is_some();
    let hint = "let the kernel delete the pair with the container's network namespace; a failing parent must kill the child";
    for args in [&["true"][..], &["ctlab-no-such-command"][..]] {
        let running = t.spawn(args).map_err(|err| Failure::new(&t.describe(args, t.who), "it starts", format!("{err:#}"), ""))?;
        let name = host_end(t, &running);
        let out = running.finish(Duration::from_secs(10));
        expect(gone(&name), &out, format!("no {name} on the host after it ended"), hint)?;
    }
    for (signal, how) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
        let script = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done";
        let mut running = t.spawn(&["sh", "-c", script]).map_err(|err| Failure::new("sh", "it starts", format!("{err:#}"), ""))?;
        let name = host_end(t, &running);
        let started = running.wait_for_stdout("ready", Duration::from_secs(10)) && host_has(&name);
        unsafe { libc::kill(running.pid(), signal) };
        let out = running.finish(Duration::from_secs(10));
        let out = Output { ran: format!("{}, then {how} to the runtime", out.ran), ..out };
        expect(started, &out, format!("{name} on the host while it runs"), hint)?;
        expect(gone(&name), &out, format!("no {name} on the host after {how}"), hint)?;
    }
    Ok(())
}
