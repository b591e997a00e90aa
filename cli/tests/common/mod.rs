//! Helpers for the console's tests: a `mint serve` of the shipped memorising model on a free
//! port, the demo's known members and non-members as PNG files, and multipart bodies.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/test-scratch").join(format!("console-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running console; killed when dropped. Its stderr is kept for the test to read.
pub struct Console {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Console {
    /// Starts `mint serve` for the shipped memorising model, in `cwd`, with `extra` flags, and
    /// waits until the model is ready.
    pub fn start(cwd: &Path, extra: &[&str]) -> Console {
        let log = cwd.with_extension("stderr.log");
        let model = repo().join("models/fmnist-memorizing");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mint"))
            .args(["serve", "--listen", "127.0.0.1:0", "--card-members", "100", "--model"])
            .arg(&model)
            .args(extra)
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting mint serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        let console = Console { child, url, log };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, body) = console.get("/api/models");
            assert_eq!(status, 200);
            let models: serde_json::Value = serde_json::from_str(&body).unwrap();
            match models["models"][0]["status"].as_str() {
                Some("ready") => break,
                Some("loading") if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(300)),
                _ => panic!("the model did not load: {body}\n{}", console.stderr()),
            }
        }
        console
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = agent().get(format!("{}{path}", self.url)).call().expect("GET");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// POSTs a multipart form of `files` (name, bytes) for `model`: the status and, on success,
    /// the bundle the signed answer carries (the error's body otherwise).
    pub fn analyze(&self, model: &str, files: &[(String, Vec<u8>)]) -> (u16, serde_json::Value) {
        let (status, body) = self.analyze_signed(model, files);
        (status, if status == 200 { predicate_of(&body) } else { body })
    }

    /// The status of an analysis of `files` and its `Retry-After` header, in seconds.
    pub fn retry_after(&self, model: &str, files: &[(String, Vec<u8>)]) -> (u16, Option<u64>) {
        let (content_type, body) = multipart(files);
        let response = agent()
            .post(format!("{}/api/analyze?model={model}", self.url))
            .header("Content-Type", &content_type)
            .send(&body[..])
            .unwrap();
        let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
        (response.status().as_u16(), retry)
    }

    /// As [`Console::analyze`], the answer as it came: a DSSE envelope on success.
    pub fn analyze_signed(&self, model: &str, files: &[(String, Vec<u8>)]) -> (u16, serde_json::Value) {
        let (content_type, body) = multipart(files);
        self.post(&format!("/api/analyze?model={model}"), &content_type, body)
    }

    pub fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut r = agent()
            .post(format!("{}{path}", self.url))
            .header("Content-Type", content_type)
            .send(&body[..])
            .expect("POST");
        let status = r.status().as_u16();
        let mut text = String::new();
        r.body_mut().as_reader().read_to_string(&mut text).unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The predicate of the in-toto statement a DSSE envelope carries (unverified: for reading).
pub fn predicate_of(envelope: &serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    let payload = envelope["payload"].as_str().unwrap_or_else(|| panic!("not an envelope: {envelope}"));
    let bytes = base64::engine::general_purpose::STANDARD.decode(payload).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    statement["predicate"].clone()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

pub fn multipart(files: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "mint-test-boundary-7f3a9c";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).as_bytes());
        body.extend(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The first `n` images of a demo IDX file (`members` or `non-members`), as PNG files.
pub fn demo_pngs(kind: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(repo().join(format!("models/fmnist-memorizing/demo-{kind}-idx3-ubyte"))).unwrap();
    (0..n)
        .map(|i| {
            let pixels = bytes[16 + i * 784..16 + (i + 1) * 784].to_vec();
            let img = image::GrayImage::from_raw(28, 28, pixels).unwrap();
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png).unwrap();
            (format!("{kind}-{i:03}.png"), png.into_inner())
        })
        .collect()
}

/// The first `n` images of a demo IDX file, as one IDX file.
pub fn demo_idx(kind: &str, n: usize) -> Vec<u8> {
    let bytes = std::fs::read(repo().join(format!("models/fmnist-memorizing/demo-{kind}-idx3-ubyte"))).unwrap();
    let mut out = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        out.extend(d.to_be_bytes());
    }
    out.extend(&bytes[16..16 + n * 784]);
    out
}

/// A connection to `addr` (host:port) from the loopback address `source` (any of 127.0.0.0/8):
/// another client, as the console counts them.
pub fn connect_from(addr: &str, source: [u8; 4]) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let target: std::net::SocketAddr = addr.parse().expect("host:port");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(10))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(stream)
}

/// A POST of `files` for `model` from the loopback address `source`, on a connection of its own:
/// the status (0 when the connection was closed without an answer) and the body.
pub fn analyze_from(addr: &str, source: [u8; 4], model: &str, files: &[(String, Vec<u8>)]) -> (u16, String) {
    use std::io::Write;
    let (content_type, body) = multipart(files);
    let Ok(mut stream) = connect_from(addr, source) else { return (0, String::new()) };
    let head = format!(
        "POST /api/analyze?model={model} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body)).is_err() {
        return (0, String::new());
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A PNG of `side`×`side` pixels of noise (which PNG cannot compress: a heavy decode).
pub fn noise_png(side: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    let img = image::GrayImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        image::Luma([state as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}
