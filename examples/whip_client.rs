//! A WHIP publisher without a browser, for benchmarks and manual checks: sends the H.264 (or
//! VP8) + Opus of a media file to `BASE/whip/CHANNEL` in real time, as OBS 30+ would, then
//! ends with DELETE.
//!
//! Usage: cargo run --release --example whip_client -- BASE CHANNEL KEY FILE SECONDS

#[path = "../tests/common/whip_client.rs"]
mod whip_client;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, channel, key, file, seconds] = args.as_slice() else {
        eprintln!("usage: whip_client BASE CHANNEL KEY FILE SECONDS");
        std::process::exit(2);
    };
    let seconds: f64 = seconds.parse().unwrap_or(30.0);
    let opts = whip_client::WhipOpts {
        media: file.into(),
        seconds,
        trickle: false,
    };
    let client = match whip_client::WhipClient::publish(base, channel, key, opts) {
        Ok(c) => c,
        Err((status, body)) => {
            eprintln!("offer refused: {status} {body}");
            std::process::exit(1);
        }
    };
    client.wait_connected(Duration::from_secs(15));
    eprintln!("live at {}", client.location);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let status = client.stop();
    eprintln!("DELETE: {status}");
}
