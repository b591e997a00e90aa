//! The committed C headers must be exactly what cbindgen generates from the sources; CI fails
//! when they drift. `MINT_BLESS=1 cargo test --test headers` rewrites them.

mod common;

use common::repo;

#[test]
fn committed_headers_match_the_sources() {
    for (crate_dir, header) in [("ffi", "include/mint_audit.h"), ("crates/abi", "include/mint_backend.h")] {
        let crate_dir = repo().join(crate_dir);
        let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
        let bindings = cbindgen::Builder::new()
            .with_crate(&crate_dir)
            .with_config(config)
            .generate()
            .unwrap_or_else(|e| panic!("cbindgen could not generate {header}: {e}"));
        let mut generated = Vec::new();
        bindings.write(&mut generated);
        let generated = String::from_utf8(generated).expect("UTF-8 header");
        let path = repo().join(header);
        if std::env::var_os("MINT_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("writing the header");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
            panic!(
                "{header} has drifted from {} (first difference at line {}).\n\
                 Regenerate it with: MINT_BLESS=1 cargo test --test headers",
                crate_dir.display(),
                first.map_or_else(|| "end".to_string(), |l| (l + 1).to_string())
            );
        }
    }
}
