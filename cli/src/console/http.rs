//! The console's HTTP side: hyper (HTTP/1.1) on a one-thread tokio runtime, as the library's
//! metrics endpoint, with the limits a page open to the public needs:
//! - connections capped, request heads bounded in size and time, connections bounded in life;
//! - an analysis per client at most `rate_per_minute` a minute (token bucket per address), at
//!   most `max_concurrent` at once (the others are told to retry), its body bounded in size and
//!   in the time it may take to arrive;
//! - uploads held in memory for one analysis, never written, never logged;
//! - no cookies, no third-party anything: the page, its script and style are built in, and a
//!   Content-Security-Policy forbids everything else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use futures_util::stream;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::analysis;
use super::bundle;
use super::registry::{Registry, State};
use super::uploads::{self, Limits, Upload};

const PAGE: &str = include_str!("assets/console.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

const SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                               connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const MAX_HEAD_BYTES: usize = 16 << 10;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an upload may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Clients whose rate is tracked; past it, the least recently seen are forgotten.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// What the console serves with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_upload_bytes: usize,
    pub limits: Limits,
    pub max_concurrent: usize,
    pub rate_per_minute: u32,
    pub max_connections: usize,
}

struct Shared {
    registry: Arc<Registry>,
    settings: Settings,
    analyses: Arc<Semaphore>,
    rates: Mutex<HashMap<IpAddr, Bucket>>,
}

/// A token bucket: `rate_per_minute` analyses, refilled continuously.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Serves the console on `listener` until the process ends.
pub fn serve(listener: std::net::TcpListener, registry: Arc<Registry>, settings: Settings) -> Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(settings.max_concurrent.max(1))
        .build()
        .context("the console's runtime")?;
    let shared = Arc::new(Shared {
        registry,
        analyses: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
        rates: Mutex::new(HashMap::new()),
        settings,
    });
    runtime.block_on(accept(listener, shared))
}

async fn accept(listener: std::net::TcpListener, shared: Arc<Shared>) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let connections = Arc::new(Semaphore::new(shared.settings.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors, or reset before accepted: pause, keep serving.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else { continue };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(|request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(route(request, peer, &shared).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES.max(8192))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFETIME, connection).await;
        });
    }
}

async fn route(request: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/") => asset(PAGE, "text/html; charset=utf-8"),
        (&Method::GET, "/console.js") => asset(SCRIPT, "text/javascript; charset=utf-8"),
        (&Method::GET, "/console.css") => asset(STYLE, "text/css; charset=utf-8"),
        (&Method::GET, "/api/models") => reply(StatusCode::OK, &models(shared)),
        (&Method::POST, "/api/analyze") => analyze(request, peer.ip(), shared).await,
        (_, "/" | "/console.js" | "/console.css" | "/api/models" | "/api/analyze") => {
            problem(StatusCode::METHOD_NOT_ALLOWED, "This address does not take that kind of request.")
        }
        _ => problem(StatusCode::NOT_FOUND, "There is nothing at this address."),
    }
}

fn models(shared: &Shared) -> Value {
    let models: Vec<Value> = shared
        .registry
        .entries
        .iter()
        .map(|e| match &*e.state.read().unwrap() {
            State::Loading => json!({"id": e.id, "status": "loading"}),
            State::Ready(m) => json!({"id": e.id, "status": "ready", "card": m.card}),
            State::Failed(why) => json!({"id": e.id, "status": "failed", "error": why}),
        })
        .collect();
    let s = &shared.settings;
    json!({
        "models": models,
        "alpha": analysis::ALPHA,
        "limits": {"max_upload_bytes": s.max_upload_bytes, "max_images": s.limits.max_images,
                   "max_side": s.limits.max_side, "rate_per_minute": s.rate_per_minute},
        "mint_version": mint_audit::VERSION,
    })
}

async fn analyze(request: Request<Incoming>, ip: IpAddr, shared: &Shared) -> Response<Full<Bytes>> {
    let query = request.uri().query().unwrap_or("");
    let Some(id) = query.split('&').find_map(|kv| kv.strip_prefix("model=")) else {
        return problem(StatusCode::BAD_REQUEST, "Choose a model first.");
    };
    let Some(entry) = shared.registry.get(id) else {
        return problem(StatusCode::NOT_FOUND, "This model is not on this console.");
    };
    let model = match &*entry.state.read().unwrap() {
        State::Ready(m) => Arc::clone(m),
        State::Loading => {
            return problem(StatusCode::SERVICE_UNAVAILABLE, "This model is still starting up; try again in a minute.")
        }
        State::Failed(_) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "This model is unavailable: it failed to load on this console.",
            )
        }
    };
    if let Some(wait) = rate_limited(shared, ip) {
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many requests from your address; try again in {} seconds.", wait.as_secs().max(1)),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert("Retry-After", v);
        }
        return r;
    }
    let max = shared.settings.max_upload_bytes;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("The upload is too large: at most {} MB per request. Send fewer or smaller images.", max >> 20),
        )
    };
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let Some(boundary) = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
    else {
        return problem(StatusCode::BAD_REQUEST, "The images must be sent as a form upload (multipart/form-data).");
    };
    // One analysis per core: the others are told to come back rather than queued unseen.
    let Ok(permit) = Arc::clone(&shared.analyses).try_acquire_owned() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "The console is busy with other requests; try again in a moment.",
        );
    };
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(request.into_body(), max).collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(),
        Ok(Err(_)) => return problem(StatusCode::BAD_REQUEST, "The upload was interrupted; try again."),
        Err(_) => return problem(StatusCode::REQUEST_TIMEOUT, "The upload took too long to arrive; try again."),
    };
    let uploads = match read_form(body, boundary, &shared.settings.limits).await {
        Ok(u) => u,
        Err(message) => return problem(StatusCode::BAD_REQUEST, &message),
    };
    let limits = shared.settings.limits;
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let decoded = uploads::decode(&uploads, model.input_shape, &limits).map_err(Rejection::Input)?;
        drop(uploads);
        let evidence = analysis::analyze(&model, &decoded).map_err(|e| Rejection::Internal(format!("{e:#}")))?;
        Ok::<_, Rejection>((decoded.samples.len(), bundle::Bundle::new(evidence, SystemTime::now())))
    })
    .await;
    match outcome {
        Ok(Ok((n, bundle))) => {
            // Counts only: never a file name, a hash or an address.
            eprintln!("mint serve: analysed {n} images for {} in {:.2} s", entry.id, started.elapsed().as_secs_f64());
            reply(StatusCode::OK, &bundle.to_json())
        }
        Ok(Err(Rejection::Input(message))) => problem(StatusCode::UNPROCESSABLE_ENTITY, &message),
        Ok(Err(Rejection::Internal(why))) => {
            eprintln!("mint serve: analysis failed: {why}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The analysis failed on the console's side; the error is logged there.",
            )
        }
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "The analysis failed on the console's side."),
    }
}

enum Rejection {
    Input(String),
    Internal(String),
}

/// The files of a multipart form (field `images`), in order.
async fn read_form(body: Bytes, boundary: String, limits: &Limits) -> Result<Vec<Upload>, String> {
    let constraints = multer::Constraints::new().allowed_fields(vec!["images"]);
    let mut form = multer::Multipart::with_constraints(
        stream::once(async move { Ok::<_, Infallible>(body) }),
        boundary,
        constraints,
    );
    let mut uploads = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(multer::Error::UnknownField { .. }) => {
                return Err("The form has a field this console does not take.".into())
            }
            Err(_) => return Err("The upload could not be read as a form; try again.".into()),
        };
        if uploads.len() >= limits.max_images {
            return Err(format!(
                "Too many images: this console takes at most {} per request. Split them into several requests.",
                limits.max_images
            ));
        }
        let name = field.file_name().unwrap_or("").to_owned();
        let bytes =
            field.bytes().await.map_err(|_| "The upload could not be read as a form; try again.".to_string())?;
        uploads.push(Upload { name, bytes: bytes.to_vec() });
    }
    Ok(uploads)
}

/// `Some(wait)` when the client has no analysis left this minute.
fn rate_limited(shared: &Shared, ip: IpAddr) -> Option<Duration> {
    let rate = shared.settings.rate_per_minute.max(1) as f64;
    let now = Instant::now();
    let mut rates = shared.rates.lock().unwrap();
    if rates.len() >= MAX_TRACKED_CLIENTS && !rates.contains_key(&ip) {
        // Forget the clients seen longest ago (their buckets are the fullest).
        let mut seen: Vec<Instant> = rates.values().map(|b| b.at).collect();
        seen.sort_unstable();
        let cut = seen[seen.len() / 2];
        rates.retain(|_, b| b.at > cut);
    }
    let bucket = rates.entry(ip).or_insert(Bucket { tokens: rate, at: now });
    bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate / 60.0).min(rate);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        None
    } else {
        Some(Duration::from_secs_f64((1.0 - bucket.tokens) * 60.0 / rate).max(Duration::from_secs(1)))
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, content_type, Bytes::from_static(body.as_bytes()))
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", Bytes::from(body.to_string()))
}

/// An error for a person: `{"error": message}`.
fn problem(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, &json!({"error": message}))
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header("Content-Security-Policy", SECURITY_POLICY)
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
        .header("Cache-Control", "no-store")
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
