//! The shipped model's fixtures, shared by the library's tests and the system tests (which
//! include this file): its configuration, its taps, synthetic features, NPY references.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's root (this file serves crates at two depths).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("models/fmnist-memorizing").is_dir())
        .expect("the repository holds models/")
        .to_path_buf()
}

/// The shipped memorizing model's auditor configuration, with absolute paths, as JSON.
pub fn shipped_config() -> serde_json::Value {
    let dir = repo().join("models/fmnist-memorizing");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("auditor.json")).unwrap()).unwrap();
    config["model"]["onnx"] = dir.join("model.onnx").display().to_string().into();
    config["head"]["path"] = dir.join("head.onnx").display().to_string().into();
    config
}

/// Channel counts of the shipped model's taps (four stages, then the logits).
pub const SHIPPED_CHANNELS: [usize; 5] = [16, 32, 64, 128, 10];

/// Per-sample features of the shipped taps, as the vendor would hand them over already
/// reduced (`[n, C]` channel maxima, and the `[n, 10]` logits), from a fixed seed.
pub fn synthetic_reduced(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    SHIPPED_CHANNELS.iter().map(|&c| (0..n * c).map(|_| next() * 3.0).collect()).collect()
}

/// Views over [`synthetic_reduced`] data.
pub fn reduced_views(data: &[Vec<f32>], n: usize) -> Vec<mint_audit::TensorView<'_>> {
    use mint_audit::{Form, TensorView};
    data.iter()
        .zip(SHIPPED_CHANNELS)
        .enumerate()
        .map(|(i, (d, c))| {
            let form = if i == 4 { Form::Vector } else { Form::ChannelMax };
            TensorView::vectors(d.as_slice(), form, n, c).unwrap()
        })
        .collect()
}

/// Reads a float32 NPY file: shape and values.
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// Loads the shipped configuration as the library does.
pub fn shipped_auditor_config() -> mint_audit::Config {
    mint_audit::Config::from_json(&shipped_config().to_string(), &repo()).unwrap()
}

/// A test CA and a server certificate for localhost and 127.0.0.1 signed by it, written as
/// PEM files into `dir`: (ca.pem, server.pem, server.key).
pub fn tls_fixture(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "mint-audit test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// One plain-HTTP scrape of `/metrics` on a fresh connection; `None` when refused, cut or late.
pub fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}
