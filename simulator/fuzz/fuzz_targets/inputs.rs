//! Every user input of the simulator: a tag byte (`s` scenario, `t` trace, `k` Service
//! list) and the text. Parsers must refuse or accept; accepted inputs run with a cap on
//! events. A panic, a time-out or a memory blow-up is a finding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sharedlb_simulator::fuzz::case(data);
});
