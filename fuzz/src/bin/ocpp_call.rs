//! AFL target `ocpp_call`: see `fuzz/targets.rs`.
#[allow(dead_code)]
#[path = "../../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        targets::ocpp_call(data);
    });
}
