//! Runs the repository's Node programs (the TypeScript client's smoke program, the dashboard's
//! browser test) from Rust tests, talking to them line by line over stdin/stdout.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// A folder of the repository, from its path relative to the repository root.
pub fn repo_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Installs the npm project in `dir` from its lockfile (`npm ci`) unless `node_modules` is
/// already there (`.ci/run` installs them before the tests). Once per process and folder.
pub fn npm_ci(dir: &Path) {
    static DONE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    let done = done.get_or_insert_with(HashSet::new);
    if done.contains(dir) || dir.join("node_modules/.package-lock.json").exists() {
        done.insert(dir.to_owned());
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run npm (Node.js 20 or later is needed): {e}"));
    assert!(status.success(), "`npm ci` failed in {}", dir.display());
    done.insert(dir.to_owned());
}

/// Runs an npm script in `dir` to completion and returns its output; panics when it fails.
pub fn npm_run(dir: &Path, script: &str) -> String {
    npm_ci(dir);
    let out = std::process::Command::new("npm")
        .args(["run", "--silent", script])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`npm run {script}` failed in {}:\n{text}",
        dir.display()
    );
    text
}

/// Debian's Chromium (`apt-get install chromium`), or `PAWTROPOLIS_CHROMIUM`.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("PAWTROPOLIS_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "no Chromium at {} (install Debian's: `apt-get install chromium`, or set PAWTROPOLIS_CHROMIUM)",
        path.display()
    );
    path
}

/// A running `node` program whose stdout is read line by line.
pub struct NodeProgram {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line read so far, for failure messages.
    pub transcript: Vec<String>,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Drop for NodeProgram {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

impl NodeProgram {
    /// Starts `node <script>` in `dir` with `env` added to the environment.
    pub fn spawn(dir: &Path, script: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a failed test takes Chromium down with node.
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kept for failure messages (a thrown check prints only to stderr).
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                eprintln!("node stderr: {line}");
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            stdin,
            lines,
            transcript: Vec::new(),
            stderr,
        }
    }

    /// What the program printed so far, stdout then stderr, for failure messages.
    pub fn output(&self) -> String {
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        format!("{}\n--- stderr ---\n{err}", self.transcript.join("\n"))
    }

    /// The next line the program prints, or `None` when it has closed stdout.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no output within {timeout:?}; so far:\n{}", self.output()))
            .unwrap();
        if let Some(l) = &line {
            println!("node: {l}");
            self.transcript.push(l.clone());
        }
        line
    }

    /// Sends one line to the program's stdin.
    pub async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Reads the rest of the output and waits for the exit; panics unless it succeeded.
    pub async fn finish(mut self, timeout: Duration) -> Vec<String> {
        while self.next_line(timeout).await.is_some() {}
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("node did not exit")
            .unwrap();
        // Let the stderr reader catch up before reporting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            status.success(),
            "node exited with {status}; output:\n{}",
            self.output()
        );
        std::mem::take(&mut self.transcript)
    }
}
