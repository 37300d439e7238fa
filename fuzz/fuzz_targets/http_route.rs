//! HTTP routing and request handling: any method, path and Range header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onair::fuzzing::http_route(data);
});

