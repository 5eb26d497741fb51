//! The demo executions behind `porthole --demo` and the README: a training
//! run with debugger-like and TensorBoard-like ports, a run that fails and
//! lingers, and a quick one that succeeds. They need only Python 3 and a
//! POSIX sh.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Paths;
use crate::source::model::CreateExecution;

/// The scripts, embedded so that an installed binary (without the source
/// tree) can still run the demo.
const SCRIPTS: [(&str, &str); 3] = [
    ("train.py", include_str!("../../assets/demo/train.py")),
    ("fail.py", include_str!("../../assets/demo/fail.py")),
    ("ok.sh", include_str!("../../assets/demo/ok.sh")),
];

/// Where the demo scripts are: the source tree's `assets/demo` when it
/// exists (a development build), else copies written under
/// `data_dir/demo` from the embedded scripts.
pub fn assets_dir(paths: &Paths) -> anyhow::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("demo");
    if SCRIPTS.iter().all(|(name, _)| source.join(name).is_file()) {
        return Ok(source);
    }
    let dir = paths.data_dir.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in SCRIPTS {
        let path = dir.join(name);
        // Rewritten every time: an older porthole may have left older ones.
        super::store::write_atomically(&path, text.as_bytes())?;
    }
    Ok(dir)
}

/// The three demo executions, with their scripts in `assets_dir`. They run
/// in that directory and authorize the user's default key.
pub fn demo_executions(assets_dir: &Path) -> Vec<CreateExecution> {
    let script = |name: &str| assets_dir.join(name).to_string_lossy().into_owned();
    let make = |title: &str, command: Vec<String>, linger: Option<&str>| CreateExecution {
        project: Some(super::runner::PROJECT_ID.to_string()),
        command,
        title: Some(title.to_string()),
        linger: linger.map(str::to_string),
        debug_key: None,
        cwd: Some(assets_dir.to_string_lossy().into_owned()),
    };
    vec![
        make(
            "demo: training run",
            vec!["python3".into(), "-u".into(), script("train.py")],
            None,
        ),
        make(
            "demo: failing run (lingers)",
            vec!["python3".into(), "-u".into(), script("fail.py")],
            Some("10m"),
        ),
        make("demo: quick run", vec!["sh".into(), script("ok.sh")], None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_scripts_exist_where_the_executions_say() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths {
            config_dir: dir.path().join("c"),
            data_dir: dir.path().join("d"),
        };
        let assets = assets_dir(&paths).expect("found");
        let demos = demo_executions(&assets);
        assert_eq!(demos.len(), 3);
        for d in &demos {
            let script = d.command.last().expect("a script");
            assert!(Path::new(script).is_file(), "{script}");
        }
        assert_eq!(demos[1].linger.as_deref(), Some("10m"));
        assert_eq!(demos[0].title.as_deref(), Some("demo: training run"));
    }
}
