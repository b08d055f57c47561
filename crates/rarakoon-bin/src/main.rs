//! rarakoon-bin: the command-line entry point (work in progress).

fn main() {
    println!("rarakoon-bin: not yet implemented");
}
