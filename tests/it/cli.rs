//! The binary as a new user meets it: the README's quickstart followed literally (against
//! mocks), `check`, `--version`, shell completions, and the open-relay refusal.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::spawn_mock;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{what}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary run in `dir` with only `vars` (and PATH) in its environment: nothing from the
/// developer's shell (an exported admin key, say) can make a test pass.
fn switchyard(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` and returns it with the address it announced.
fn serve(mut cmd: Command) -> (Running, String) {
    let mut child = Running(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("switchyard listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(url) => (child, url),
        Err(_) => {
            let _ = child.0.kill();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err);
            panic!("serve did not announce its address: {err}");
        }
    }
}

/// The shell block of the README's "Running the gateway" section.
fn quickstart() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let section = readme
        .split("\n## Running the gateway\n")
        .nth(1)
        .expect("README has a \"Running the gateway\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section starts with a sh block");
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The README's quickstart, step by step, on the example config: copy it, export the
/// variables the quickstart names (and nothing else), run each `cargo run --release --`
/// command it lists. The only change to the copied file: its two provider URLs point at
/// mocks and it listens on a free port.
#[tokio::test]
async fn the_readme_quickstart_works_as_written_on_the_example_config() {
    let anthropic = spawn_mock("anthropic").await;
    let openrouter = spawn_mock("openrouter").await;
    let dir = TempDir::new("quickstart");
    let steps = quickstart();
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut commands: Vec<Vec<String>> = Vec::new();
    for step in &steps {
        if let Some(exports) = step.strip_prefix("export ") {
            for assignment in exports.split_whitespace() {
                let (name, _) = assignment.split_once('=').expect("export NAME=...");
                vars.push((name.to_string(), format!("sk-test-{}", name.to_lowercase())));
            }
        } else if let Some(args) = step.strip_prefix("cargo run --release -- ") {
            commands.push(args.split_whitespace().map(str::to_string).collect());
        } else if step == "cp switchyard.example.yaml switchyard.yaml" {
            let example =
                std::fs::read_to_string(Path::new(REPO).join("switchyard.example.yaml")).unwrap();
            let pointed = example
                .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
                .replace("https://api.anthropic.com", &anthropic.url())
                .replace(
                    "https://openrouter.ai/api/v1",
                    &format!("{}/v1", openrouter.url()),
                );
            assert_ne!(example, pointed);
            std::fs::write(dir.0.join("switchyard.yaml"), pointed).unwrap();
        } else {
            panic!("a quickstart step this test does not know: {step:?}");
        }
    }
    assert!(dir.0.join("switchyard.yaml").exists(), "{steps:?}");
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (&**k, &**v)).collect();
    let (last, before) = commands
        .split_last()
        .expect("the quickstart runs the gateway");
    assert_eq!(last[..1], ["serve".to_string()], "{commands:?}");
    for args in before {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = switchyard(&dir.0, &args, &vars).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        if args[0] == "check" {
            assert!(stdout.contains("switchyard.yaml: OK"), "{stdout}");
            assert!(stdout.contains("routes:   2: main (default)"), "{stdout}");
        }
    }
    let args: Vec<&str> = last.iter().map(String::as_str).collect();
    let (_gateway, url) = serve(switchyard(&dir.0, &args, &vars));

    let http = reqwest::Client::new();
    let ask = || {
        http.post(format!("{url}/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "main", "max_tokens": 32,
                "messages": [{"role": "user", "content": "Say hello"}]}))
            .send()
    };
    let r = ask().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-backend"], "anthropic");
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "Hello from anthropic");
    let seen = &anthropic.requests()[0];
    assert_eq!(seen["headers"]["x-api-key"], "sk-test-anthropic_api_key");

    // The chain behind it works too: Anthropic overloaded, OpenRouter answers.
    http.post(format!("{}/_mock/plan", anthropic.url()))
        .json(&json!({"steps": [], "then": {"kind": "status", "status": 529}}))
        .send()
        .await
        .unwrap();
    let r = ask().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-backend"], "openrouter");
}

#[test]
fn check_validates_without_serving_and_reports_every_unset_variable_at_once() {
    let dir = TempDir::new("check");
    let example = Path::new(REPO).join("switchyard.example.yaml");
    let out = switchyard(&dir.0, &["check", "--config"], &[])
        .arg(&example)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let file = example.display().to_string();
    assert!(
        stderr.starts_with("switchyard: 2 problems in the config:\n"),
        "{stderr}"
    );
    for (line, var) in [(9, "ANTHROPIC_API_KEY"), (13, "OPENROUTER_API_KEY")] {
        let key = if var.starts_with("ANTHROPIC") {
            "anthropic"
        } else {
            "openrouter"
        };
        let want = format!(
            "\n  {file}:{line}: backends.{key}.api_key_env: environment variable {var} is not set"
        );
        assert!(stderr.contains(&want), "{want}\n{stderr}");
    }
    assert!(stdout.is_empty(), "{stdout}");

    // The default path, a valid file: exit 0 and what it serves; nothing is listened on.
    std::fs::write(
        dir.0.join("switchyard.yaml"),
        "backends:\n  local: { provider: ollama }\nroutes:\n  main:\n    chain:\n      - { backend: local, model: qwen }\n",
    )
    .unwrap();
    let out = switchyard(&dir.0, &["check"], &[]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "switchyard.yaml: OK\n\
         listen:   127.0.0.1:8080 (this machine only; no gateway keys)\n\
         backends: 1: local (openai_chat, no key)\n\
         routes:   1: main = local:qwen\n\
         health:   memory (this replica)\n"
    );

    // An indentation mistake: the place and a hint, not serde's words alone.
    std::fs::write(
        dir.0.join("indent.yaml"),
        "backends:\n  local:\n  provider: ollama\nroutes: {}\n",
    )
    .unwrap();
    let out = switchyard(&dir.0, &["check", "-c", "indent.yaml"], &[])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("indent.yaml:2: backends.local: ")
            && stderr.contains("check the indentation: `local:` has nothing indented under it"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_be_an_open_relay_unless_told() {
    let dir = TempDir::new("relay");
    let base = "backends:\n  local: { provider: ollama }\nroutes:\n  main: { chain: [ { backend: local, model: m } ] }\n";
    std::fs::write(
        dir.0.join("open.yaml"),
        format!("listen: 0.0.0.0:0\n{base}"),
    )
    .unwrap();
    let out = switchyard(&dir.0, &["serve", "-c", "open.yaml"], &[])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("switchyard: open.yaml:1: listen: 0.0.0.0:0 is reachable from other machines and auth.keys_env is empty")
            && stderr.contains("open relay"),
        "{stderr}"
    );
    // --listen is held to the same rule.
    std::fs::write(dir.0.join("local.yaml"), base).unwrap();
    let out = switchyard(
        &dir.0,
        &["serve", "-c", "local.yaml", "--listen", "[::]:0"],
        &[],
    )
    .output()
    .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--listen [::]:0 is reachable from other machines"),
        "{stderr}"
    );
    // The operator's explicit word: it serves.
    std::fs::write(
        dir.0.join("allowed.yaml"),
        format!("listen: 0.0.0.0:0\nauth: {{ allow_open_relay: true }}\n{base}"),
    )
    .unwrap();
    let (_gateway, url) = serve(switchyard(&dir.0, &["serve", "-c", "allowed.yaml"], &[]));
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
}

#[test]
fn version_and_shell_completions() {
    let dir = TempDir::new("cli");
    let out = switchyard(&dir.0, &["--version"], &[]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out).0,
        format!("switchyard {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = switchyard(&dir.0, &["completions", "bash"], &[])
        .output()
        .unwrap();
    let (bash, _) = text(&out);
    assert!(out.status.success());
    assert!(bash.contains("complete -F _switchyard"), "{bash}");
    for sub in ["serve", "check", "status", "mock", "demo", "completions"] {
        assert!(
            bash.contains(&format!("switchyard,{sub})")),
            "{sub} missing"
        );
    }
    for shell in ["zsh", "fish"] {
        let out = switchyard(&dir.0, &["completions", shell], &[])
            .output()
            .unwrap();
        assert!(
            out.status.success() && text(&out).0.contains("serve"),
            "{shell}"
        );
    }
    let out = switchyard(&dir.0, &["completions", "tcsh"], &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
