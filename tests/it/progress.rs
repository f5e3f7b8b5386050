//! What a person sees on a real terminal: `isobuild fetch` run inside tmux on a 14-row
//! screen against a registry slowed by the fault proxy, its screen captured while blobs
//! download. The overall line (bytes done out of the total) stays on the last row however
//! many blobs there are, the download lines are capped (the rest counted as waiting), and
//! nothing stays drawn at the end (nor after Ctrl-C). The screens are printed (`--no-capture`)
//! for whoever wants to see them.

#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Test;
use crate::harness::images::{Format, Image, Layer, Pusher};
use crate::harness::peers::Registry;
use crate::harness::proxy::{Fault, Proxy};

/// Rows and columns of the terminal the run is drawn on.
const ROWS: usize = 14;
const COLUMNS: usize = 110;

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    /// Start `shell_command` in a detached session of `ROWS`×`COLUMNS` in `dir`.
    fn start(dir: &Path, shell_command: &str) -> Self {
        let tmux = Self {
            socket: format!("isobuild-it-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "run"])
            .args(["-x", &COLUMNS.to_string(), "-y", &ROWS.to_string()])
            .arg("-c")
            .arg(dir)
            .arg(shell_command)
            .status()
            .expect("tmux is needed: apt-get install tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// The screen as text, one line a row.
    fn capture(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "run"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// Capture the screen until `done` says it shows what is wanted, or two minutes pass.
fn wait_for(tmux: &Tmux, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let screen = tmux.capture();
        if done(&screen) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "the screen never showed {what}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A registry of twenty slowed images behind the proxy, a recipe of them, and a tmux
/// session running `isobuild fetch` of it, with what the overall line looks like.
struct Run {
    tmux: Tmux,
    overall: regex::Regex,
    _registry: Registry,
    _proxy: Proxy,
    _test: Test,
}

fn start_slow_fetch() -> Run {
    let registry = Registry::start();
    let pusher = Pusher::new(&registry);
    // Twenty images of two layers: one of their own, one shared by all (its line names
    // several images): more downloads than the screen has rows.
    let shared = Layer::generate(900, 1, 64 * 1024);
    let mut list = String::new();
    for index in 0..20_u64 {
        let own = Layer::generate(index, 1, 256 * 1024);
        let image = Image::new(Format::Docker, "amd64", vec![shared.clone(), own]);
        pusher.push_image(&format!("test/app{index}"), Some("1.0"), &image);
    }
    let proxy = Proxy::start(registry.addr());
    let host = proxy.host();
    for index in 0..20 {
        list.push_str(&format!(
            "    - {{ name: app{index}, ref: \"{host}/test/app{index}:1.0\" }}\n"
        ));
    }
    // Slow enough that the screen is captured mid-transfer on any machine.
    proxy.fault(
        "/blobs/",
        Fault::Throttle {
            chunk: 8 * 1024,
            pause: Duration::from_millis(40),
        },
        1000,
    );
    let test = Test::new().recipe(&format!(
        "isobuild: 1\nname: Progress\nversion: 1.0.0\nimages:\n  list:\n{list}"
    ));
    let command = format!(
        "env -u NO_COLOR -u ISOBUILD_NO_PROGRESS ISOBUILD_CACHE_DIR='{}' TERM=xterm-256color '{}' fetch recipe.yaml --color never --insecure-registry {host} --network-jobs 16; echo exit=$?; sleep 600",
        test.cache_dir().display(),
        env!("CARGO_BIN_EXE_isobuild"),
    );
    let tmux = Tmux::start(test.path(), &command);
    let overall = regex::Regex::new(
        r"Fetching \[[=> ]+\] +\d+(\.\d+)? ?[KMG]?i?B/\d+(\.\d+)? ?[KMG]i?B .*ETA",
    )
    .unwrap();
    Run {
        tmux,
        overall,
        _registry: registry,
        _proxy: proxy,
        _test: test,
    }
}

#[test]
fn a_14_row_terminal_keeps_the_overall_line_with_bytes_in_view() {
    let Run { tmux, overall, .. } = &start_slow_fetch();
    let screen = wait_for(tmux, "the overall line with bytes", |screen| {
        overall.is_match(screen) && screen.contains("sha256:") && screen.contains(" waiting")
    });
    eprintln!("captured screen ({ROWS} rows):\n{screen}");
    let rows: Vec<&str> = screen.lines().collect();
    assert!(rows.len() <= ROWS, "{screen}");
    let last = rows
        .iter()
        .rev()
        .find(|row| !row.trim().is_empty())
        .unwrap();
    assert!(
        overall.is_match(last),
        "the overall line is not the last:\n{screen}"
    );
    let downloads = rows.iter().filter(|row| row.contains("sha256:")).count();
    // Sixteen transfers at once, at most nine lines (a line whose place just freed is drawn
    // at its next tick): the rest wait, counted in the overall line.
    assert!(
        (1..=ROWS - 5).contains(&downloads),
        "{downloads} lines:\n{screen}"
    );
    assert!(last.contains(" waiting"), "{screen}");
    let end = wait_for(tmux, "the end of the run", |screen| {
        screen.contains("exit=")
    });
    eprintln!("screen at the end:\n{end}");
    assert!(end.contains("exit=0"), "{end}");
    assert!(!end.contains("Fetching ["), "a bar stayed drawn:\n{end}");
    assert!(
        !end.contains("sha256:"),
        "a download line stayed drawn:\n{end}"
    );
    assert!(end.contains(" downloaded, "), "{end}");
}

#[test]
fn ctrl_c_leaves_no_line_drawn() {
    let Run { tmux, overall, .. } = &start_slow_fetch();
    wait_for(tmux, "downloads", |screen| overall.is_match(screen));
    let status = tmux
        .command()
        .args(["send-keys", "-t", "run", "C-c"])
        .status()
        .unwrap();
    assert!(status.success());
    let end = wait_for(tmux, "the end of the run", |screen| {
        screen.contains("exit=")
    });
    eprintln!("screen after Ctrl-C:\n{end}");
    assert!(end.contains("exit=130"), "{end}");
    assert!(!end.contains("Fetching ["), "a bar stayed drawn:\n{end}");
    assert!(
        !end.contains("sha256:"),
        "a download line stayed drawn:\n{end}"
    );
    assert!(end.contains("error: interrupted"), "{end}");
}
