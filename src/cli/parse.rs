//! Parsing the command line with the definitions of its one subcommand.
//!
//! clap builds a command's whole definition before it parses: fourteen subcommands with all
//! their options, then their help and global options wired up, and all of it freed again. A
//! process that serves one `append` from a shell loop spends about a tenth of a millisecond on
//! that. So the command line is first parsed against the options of every subcommand and only
//! the subcommand it names; whatever does not parse cleanly that way (help, `--version`, a
//! mistake, `help SUBCOMMAND`) goes to the whole definition, which prints exactly what it
//! always did. A clean parse means the same either way: the one subcommand's definition is the
//! one the whole definition holds, and nothing before it can name another.

use std::ffi::OsString;

use clap::{Args, FromArgMatches};

use super::{Cli, Globals, apply, at, clone, export, get, init, log, ls, migrate, replay};
use super::{append, schema, tail, verify};

/// Parses `args` (the program name first) into a command line.
pub(super) fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    if let Some(cli) = parse_with_one_subcommand(&args) {
        return Ok(cli);
    }
    <Cli as clap::Parser>::try_parse_from(args)
}

fn parse_with_one_subcommand(args: &[OsString]) -> Option<Cli> {
    let definition = subcommand_definition(subcommand_name(args)?)?;
    let command = Globals::augment_args(clap::Command::new("eventdir")).subcommand(definition);
    let matches = command.try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// The first argument after the program name that is neither an option nor the value of
/// `-C`/`--folder` (the only option before a subcommand that takes one).
fn subcommand_name(args: &[OsString]) -> Option<&str> {
    let mut args = args.iter().skip(1).map(|a| a.to_str());
    while let Some(arg) = args.next() {
        match arg? {
            "-C" | "--folder" => {
                args.next();
            }
            arg if arg.starts_with('-') => {}
            name => return Some(name),
        }
    }
    None
}

/// A subcommand's definition, as the whole definition (`Cli`'s `Command` enum) makes it.
fn subcommand_definition(name: &str) -> Option<clap::Command> {
    type Augment = fn(clap::Command) -> clap::Command;
    let (name, augment): (&'static str, Augment) = match name {
        "init" => ("init", init::Args::augment_args),
        "append" => ("append", append::Args::augment_args),
        "get" => ("get", get::Args::augment_args),
        "log" => ("log", log::Args::augment_args),
        "replay" => ("replay", replay::Args::augment_args),
        "at" => ("at", at::Args::augment_args),
        "ls" => ("ls", ls::Args::augment_args),
        "verify" => ("verify", verify::Args::augment_args),
        "schema" => ("schema", schema::Args::augment_args),
        "migrate" => ("migrate", migrate::Args::augment_args),
        "clone" => ("clone", clone::Args::augment_args),
        "export" => ("export", export::Args::augment_args),
        "apply" => ("apply", apply::Args::augment_args),
        "tail" => ("tail", tail::Args::augment_args),
        _ => return None,
    };
    Some(augment(clap::Command::new(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        std::iter::once("eventdir")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn every_subcommand_of_the_whole_definition_has_its_own_definition() {
        let whole = super::super::command();
        let names: Vec<&str> = whole
            .get_subcommands()
            .map(|s| s.get_name())
            .filter(|&n| n != "help")
            .collect();
        assert_eq!(names.len(), 14);
        for name in names {
            let own = subcommand_definition(name).unwrap();
            let theirs = whole.find_subcommand(name).unwrap();
            // The same options with the same help, in the same order.
            let render = |c: &clap::Command| {
                c.get_arguments()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(render(&own), render(theirs), "{name}");
            assert_eq!(
                own.get_about().map(|a| a.to_string()),
                theirs.get_about().map(|a| a.to_string())
            );
        }
    }

    #[test]
    fn a_clean_parse_with_one_subcommand_equals_the_whole_definitions() {
        for line in [
            "append order:1 --set status=paid",
            "-C shop append order:1 --data {} --expect 3",
            "--folder shop get order:1",
            "--folder=shop get order:1",
            "get order:1 -C shop",
            "-Cshop at order:1 --seq 3",
            "append --batch",
            "init shop",
            "log order:1 --from 2",
            "verify",
            "ls",
            "clone a b",
            "export",
            "tail --follow",
            "schema show order",
        ] {
            let own = parse_with_one_subcommand(&args(line))
                .unwrap_or_else(|| panic!("{line:?} parsed only with the whole definition"));
            let whole = <Cli as clap::Parser>::try_parse_from(args(line)).unwrap();
            assert_eq!(format!("{own:?}"), format!("{whole:?}"), "{line:?}");
        }
    }

    #[test]
    fn help_version_and_mistakes_go_to_the_whole_definition() {
        for line in [
            "",
            "--help",
            "--version",
            "-V",
            "help append",
            "append --help",
            "append -h",
            "--version append order:1",
            "apend order:1",
            "append",
            "append order:1 --no-such-option",
            "-C",
        ] {
            assert!(parse_with_one_subcommand(&args(line)).is_none(), "{line:?}");
        }
    }
}
