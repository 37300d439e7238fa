//! Links the system libsrt (Debian: `libsrt-gnutls-dev`, the flavour Debian's ffmpeg links, so
//! the process holds one libsrt). See src/srt/ffi.rs for why there is no -sys crate.

fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("1.5")
        .probe("srt")
    {
        panic!(
            "libsrt 1.5 not found through pkg-config ({e}); on Debian/Ubuntu: apt-get install libsrt-gnutls-dev (scripts/setup does)"
        );
    }
}
