fn main() -> std::process::ExitCode {
    eventdir::cli::main()
}
