//! The nodes: registering them, their processes, their links, faults injected from outside.

use std::time::{Duration, Instant};

use cucumber::{given, then, when};

use crate::steps::commands::expand;
use crate::world::Rbee;

fn add_node_line(world: &Rbee, name: &str) -> String {
    format!(
        "rbee setup add-node --name {name} --ssh-host {} --ssh-user root --install-path /opt/rbee",
        world.cluster.host(name).ip
    )
}

#[given("a running queen")]
async fn running_queen(world: &mut Rbee) {
    world.start_queen("").await;
}

#[given(regex = r#"^the nodes "(\w+)" and "(\w+)" are registered( with a running queen)?$"#)]
async fn registered(world: &mut Rbee, a: String, b: String, with_queen: String) {
    if !with_queen.is_empty() {
        world.start_queen("").await;
    }
    for name in [a, b] {
        register(world, name).await;
    }
}

#[given(regex = r#"^the node "(\w+)" is registered$"#)]
async fn register(world: &mut Rbee, name: String) {
    let out = world.run(&add_node_line(world, &name)).await;
    assert_eq!(out.code, Some(0), "add-node {name}:\n{}", out.stderr);
}

#[given(regex = r#"^the queen requires the API key "(.+)"$"#)]
async fn queen_key(world: &mut Rbee, key: String) {
    world.stop_queen().await;
    world.start_queen(&format!("--api-key {key}")).await;
}

#[given(regex = r#"^the queen gives workers (\S+) to load$"#)]
async fn loading_timeout(world: &mut Rbee, timeout: String) {
    world.stop_queen().await;
    world
        .start_queen(&format!("--loading-timeout {timeout}"))
        .await;
}

#[given(
    regex = r#"^the queen starts workers with (\d+) slots? and queues at most (\d+) tasks per worker$"#
)]
async fn queue_limit(world: &mut Rbee, slots: usize, limit: usize) {
    world.stop_queen().await;
    world
        .start_queen(&format!("--worker-slots {slots} --queue-limit {limit}"))
        .await;
}

#[given(regex = r#"^the queen's own hive may use (\d+) MB$"#)]
async fn local_hive_memory(world: &mut Rbee, mb: u64) {
    world.stop_queen().await;
    world
        .start_queen(&format!("--local-hive-args=\"--memory-limit-mb {mb}\""))
        .await;
}

#[given(regex = r#"^my configuration holds the API key "(.+)"$"#)]
async fn config_key(world: &mut Rbee, key: String) {
    world.api_key = Some(key);
    world.write_config();
}

#[given(regex = r#"^sshd on "(\w+)" is stopped$"#)]
async fn sshd_stopped(world: &mut Rbee, node: String) {
    world.cluster.host_mut(&node).stop_sshd();
}

#[given(regex = r#"^the hive on "(\w+)" runs with ([A-Z_]+)=(\S+)$"#)]
async fn hive_env(world: &mut Rbee, node: String, key: String, value: String) {
    world.cluster.host_mut(&node).set_env(&key, &value);
}

#[given(regex = r#"^a worker on "(\w+)" has answered once$"#)]
async fn answered_once(world: &mut Rbee, node: String) {
    let model = if node == "mac" { "Q8_0" } else { "Q4_1" };
    let out = world
        .run(&format!(
            "rbee infer --node {node} --model hf:test/SmolLM2:{model} --max-tokens 4 --prompt hi"
        ))
        .await;
    assert_eq!(out.code, Some(0), "infer on {node}:\n{}", out.stderr);
}

#[given(regex = r#"^"(\w+)" already runs a hive of version (\S+) on port (\d+)$"#)]
async fn stand_in_hive(world: &mut Rbee, node: String, version: String, port: u16) {
    // An old or foreign rbee-hive: answers its health endpoint with another version.
    let host = world.cluster.host(&node);
    let script = format!(
        "import http.server, json\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       body = json.dumps({{'status': 'alive', 'version': '{version}', 'api_version': 'v1'}}).encode()\n\
         \x20       self.send_response(200); self.send_header('content-type', 'application/json')\n\
         \x20       self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.HTTPServer(('0.0.0.0', {port}), H).serve_forever()\n"
    );
    let path = host.home.join("rbee-hive");
    std::fs::write(&path, script).unwrap();
    let child = tokio::process::Command::new("ip")
        .args(["netns", "exec", &host.ns, "python3"])
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    world.stand_ins.push(child);
    let addr = format!("http://{}:{port}/v1/health", host.ip);
    Rbee::eventually("the stand-in hive answers", Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            reqwest::get(&addr)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
}

#[then(regex = r#"^"(\w+)" answers over SSH at (\S+) with the hostname "(\w+)"$"#)]
async fn ssh_hostname(world: &mut Rbee, node: String, ip: String, hostname: String) {
    assert_eq!(world.cluster.host(&node).ip, ip);
    let out = tokio::process::Command::new("ssh")
        .arg("-F")
        .arg(&world.cluster.ssh_config)
        .args([&ip, "hostname; cat /proc/net/route | wc -l"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(hostname.as_str()), "{out:?}");
    // Only the header and the bridge's subnet: no route leaves the private network.
    assert_eq!(lines.next(), Some("2"), "routes inside {node}");
}

#[then(regex = r#"^"(\w+)" has "(.+)"$"#)]
async fn node_has_file(world: &mut Rbee, node: String, path: String) {
    let path = expand(world, &path);
    let out = world.cluster.host(&node).exec(&format!("test -x {path}"));
    assert!(out.status.success(), "{path} missing on {node}");
}

fn count(world: &Rbee, node: &str) -> (usize, usize, Vec<String>) {
    let all = world.cluster.host(node).rbee_processes();
    let hives = all.iter().filter(|p| p.program == "rbee-hive").count();
    let workers = all
        .iter()
        .filter(|p| p.program == "llm-worker-rbee")
        .count();
    (
        hives,
        workers,
        all.iter().map(ToString::to_string).collect(),
    )
}

#[then(regex = r#"^"(\w+)" runs (\d+) hive and (\d+) workers?$"#)]
async fn runs(world: &mut Rbee, node: String, hives: usize, workers: usize) {
    let (h, w, all) = count(world, &node);
    assert_eq!((h, w), (hives, workers), "on {node}: {all:?}");
}

#[given(regex = r#"^within (\d+) s "(\w+)" runs (\d+) hive and (\d+) workers?$"#)]
#[then(regex = r#"^within (\d+) s "(\w+)" runs (\d+) hive and (\d+) workers?$"#)]
async fn runs_within(world: &mut Rbee, secs: u64, node: String, hives: usize, workers: usize) {
    Rbee::eventually(
        &format!("{node} runs {hives} hive and {workers} workers"),
        Duration::from_secs(secs),
        || {
            let (h, w, all) = count(world, &node);
            async move {
                if (h, w) == (hives, workers) {
                    Ok(())
                } else {
                    Err(format!("{all:?}"))
                }
            }
        },
    )
    .await;
}

#[then(regex = r#"^"(\w+)" runs no rbee process$"#)]
async fn runs_nothing(world: &mut Rbee, node: String) {
    let all = world.cluster.host(&node).rbee_processes();
    assert!(all.is_empty(), "still on {node}: {all:?}");
}

#[when(regex = r#"^I note the processes on "(\w+)"$"#)]
async fn note(world: &mut Rbee, node: String) {
    for program in ["rbee-hive", "llm-worker-rbee"] {
        let found = world.process_on(&node, program);
        assert_eq!(found.len(), 1, "{program} on {node}: {found:?}");
        world
            .noted
            .insert(format!("{program} on {node}"), found[0].pid);
    }
}

#[then(regex = r#"^the hive and the worker on "(\w+)" are the ones noted$"#)]
async fn same_processes(world: &mut Rbee, node: String) {
    for program in ["rbee-hive", "llm-worker-rbee"] {
        let found = world.process_on(&node, program);
        let noted = world.noted[&format!("{program} on {node}")];
        assert_eq!(
            found.iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![noted],
            "{program} on {node}"
        );
    }
}

fn one(world: &Rbee, node: &str, program: &str) -> u32 {
    let found = world.process_on(node, program);
    assert_eq!(found.len(), 1, "{program} on {node}: {found:?}");
    found[0].pid
}

#[when(regex = r#"^the worker on "(\w+)" is killed with SIGKILL$"#)]
async fn kill_worker(world: &mut Rbee, node: String) {
    rbee_testkit::signal(one(world, &node, "llm-worker-rbee"), "KILL");
}

#[given(regex = r#"^the (hive|worker) on "(\w+)" is frozen with SIGSTOP$"#)]
#[when(regex = r#"^the (hive|worker) on "(\w+)" is frozen with SIGSTOP$"#)]
async fn freeze(world: &mut Rbee, what: String, node: String) {
    let program = if what == "hive" {
        "rbee-hive"
    } else {
        "llm-worker-rbee"
    };
    let pid = one(world, &node, program);
    rbee_testkit::signal(pid, "STOP");
    world.frozen.push(pid);
}

#[given(regex = r#"^the link of "(\w+)" goes down$"#)]
#[when(regex = r#"^the link of "(\w+)" goes down$"#)]
async fn link_down(world: &mut Rbee, node: String) {
    world.cluster.host(&node).set_link(false);
    world.link_cut_at = Some(Instant::now());
}

#[when(regex = r#"^the link of "(\w+)" comes back$"#)]
async fn link_up(world: &mut Rbee, node: String) {
    world.cluster.host(&node).set_link(true);
}

#[given("the queen receives SIGTERM")]
#[when("the queen receives SIGTERM")]
async fn queen_sigterm(world: &mut Rbee) {
    let code = world.stop_queen().await;
    world.queen_exit = Some(code);
}

#[then(regex = r"^the queen exits with code (\d+)$")]
async fn queen_exit(world: &mut Rbee, code: i32) {
    assert_eq!(world.queen_exit, Some(Some(code)));
}

#[then("the queen still runs")]
async fn queen_runs(world: &mut Rbee) {
    let queen = world.queen.as_mut().expect("a queen was started");
    assert!(
        matches!(queen.child.try_wait(), Ok(None)),
        "the queen has exited"
    );
    let (status, _) = world.queen_get("/health").await;
    assert_eq!(status, 200);
}

#[then("no queen runs on the control node")]
async fn no_queen(world: &mut Rbee) {
    let _ = world;
    let queens: Vec<_> = rbee_acceptance::processes::tagged()
        .into_iter()
        .filter(|p| p.program == "queen-rbee")
        .collect();
    assert!(queens.is_empty(), "{queens:?}");
}

#[then(regex = r#"^the line of "(\w+)" says "(\w+)"$"#)]
async fn node_line(world: &mut Rbee, node: String, status: String) {
    let text = &world.last().stdout;
    let line = text
        .lines()
        .find(|l| l.contains(&node))
        .unwrap_or_else(|| panic!("no line for {node}:\n{text}"));
    assert!(
        line.split_whitespace().any(|w| w == status),
        "{node} is not {status}: {line}"
    );
}
