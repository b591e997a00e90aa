//! The committed include/mint_backend.h must be exactly what cbindgen generates from the sources.
//! `MINT_BLESS=1 cargo test -p mint-backend-abi --test header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_sources() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let committed_path = crate_dir.join("../../include/mint_backend.h");
    if std::env::var_os("MINT_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).expect("writing include/mint_backend.h");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != generated {
        let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        panic!(
            "include/mint_backend.h has drifted from backends/abi/src (first difference at line {}).\n\
             Regenerate it with: MINT_BLESS=1 cargo test -p mint-backend-abi --test header",
            first.map_or_else(|| "end".to_string(), |l| (l + 1).to_string())
        );
    }
}
