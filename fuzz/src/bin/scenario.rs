//! AFL target `scenario`: see `fuzz/targets.rs`.
#[allow(dead_code)]
#[path = "../../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        targets::scenario(data);
    });
}
