fn main() -> std::process::ExitCode {
    nixarr_units::cli::main()
}
