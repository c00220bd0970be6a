//! The man pages under man/ are generated from the clap definitions; this test fails when they
//! are stale. Regenerate them with `EVENTDIR_UPDATE_MAN=1 cargo test --test man`.

use std::path::Path;

fn render(cmd: &clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .expect("man page renders");
    out
}

/// Every page: `eventdir.1`, and `eventdir-CMD.1` (`eventdir-CMD-SUB.1`) for each subcommand.
fn pages() -> Vec<(String, Vec<u8>)> {
    let root = eventdir::cli::command();
    let mut pages = vec![("eventdir.1".to_string(), render(&root))];
    add_subcommands(&root, "eventdir", &mut pages);
    pages
}

fn add_subcommands(parent: &clap::Command, prefix: &str, pages: &mut Vec<(String, Vec<u8>)>) {
    for sub in parent.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{prefix}-{}", sub.get_name());
        let cmd = sub.clone().name(&*name.clone().leak());
        pages.push((format!("{name}.1"), render(&cmd)));
        add_subcommands(sub, &name, pages);
    }
}

#[test]
fn man_pages_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("EVENTDIR_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for (name, bytes) in pages() {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale man pages {stale:?}: regenerate with `EVENTDIR_UPDATE_MAN=1 cargo test --test man`"
    );
}

#[test]
fn every_command_has_a_man_page_with_an_example_and_the_exit_codes() {
    for (name, bytes) in pages() {
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Examples:"), "{name} has no example");
        assert!(text.contains("Exit codes:"), "{name} lists no exit codes");
    }
}
