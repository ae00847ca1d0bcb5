//! AFL target `firmware_header`: see `fuzz/targets.rs`.
#[allow(dead_code)]
#[path = "../../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        targets::firmware_header(data);
    });
}
