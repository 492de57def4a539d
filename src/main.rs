//! The `sluice` binary: everything it does lives in [`sluice::cli`].

fn main() {
    let code = sluice::cli::main();
    // Standard input is read on a blocking thread that cannot be interrupted; leave
    // without waiting for it. Everything was flushed and settled before this point.
    std::process::exit(i32::from(code));
}
