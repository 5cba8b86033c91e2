//! The `sibyl` node binary.
fn main() {
    eprintln!("sibyl: the node is not built yet");
    std::process::exit(2);
}
