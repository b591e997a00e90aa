//! The console's HTTP side: hyper (HTTP/1.1) on a one-thread tokio runtime, as the library's
//! metrics endpoint, with the limits a page open to the public needs:
//! - connections capped in all and per client ([`clients`]: an IPv4 address or an IPv6 /64),
//!   request heads bounded in size and time, connections bounded in life;
//! - an analysis per client at most `rate_per_minute` a minute, and one at a time; its body
//!   bounded in size, read before it may wait for an analysis slot, and only while it keeps
//!   arriving (a grace period, then at least `MIN_BODY_BYTES_PER_SECOND`), the bodies held at
//!   once bounded in bytes; at most `max_concurrent` analyses run, the others wait in arrival
//!   order (one per client, so a client waits behind at most one request of each other
//!   client), up to `QUEUE_WAIT`; heavy ones (over `HEAVY_PIXELS` of decoding) wait in a lane
//!   of their own (half the slots) and run at the lowest CPU priority; each analysis bounded in
//!   pixels and time ([`uploads::Limits`]);
//! - uploads held in memory for one analysis, never written, never logged;
//! - no cookies, no third-party anything: the page, its script and style are built in, and a
//!   Content-Security-Policy forbids everything else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use futures_util::stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::budget::{self, Budget, Refusal};
use super::clients::{Client, Clients};
use mint_toolkit::attest::OperatorKey;
use mint_toolkit::console::analysis;
use mint_toolkit::console::disclosure::Disclosure;
use mint_toolkit::console::registry::{Registry, State};
use mint_toolkit::console::uploads::{self, Limits, Upload};
use mint_toolkit::formats::bundle;

const PAGE: &str = include_str!("assets/console.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

const SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                               connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const MAX_HEAD_BYTES: usize = 16 << 10;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// An upload's first bytes may take this long; after it, it must keep arriving at
/// `MIN_BODY_BYTES_PER_SECOND` on average (a 32 MiB upload then takes at most about 17 minutes: a
/// 256 kbit/s uplink).
const BODY_GRACE: Duration = Duration::from_secs(10);
const MIN_BODY_BYTES_PER_SECOND: u64 = 32 << 10;
/// The longest an upload that has arrived waits for an analysis slot.
const QUEUE_WAIT: Duration = Duration::from_secs(60);
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(1800);

/// What the console serves with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_upload_bytes: usize,
    pub limits: Limits,
    pub max_concurrent: usize,
    pub rate_per_minute: u32,
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold.
    pub max_connections_per_client: usize,
    /// Bytes of uploads held in memory at once, arriving or waiting for their analysis.
    pub max_buffered_bytes: usize,
    /// The key bundles are signed with, and whether it lives only as long as the process.
    pub signing_key: Arc<OperatorKey>,
    pub ephemeral_key: bool,
    /// How much the console tells whoever asks, the smallest set it answers on, and the daily
    /// budget (docs/security.md).
    pub disclosure: Disclosure,
    pub min_set: usize,
    pub daily_images: usize,
    pub daily_sets_per_image: usize,
}

struct Shared {
    registry: Arc<Registry>,
    settings: Settings,
    clients: Arc<Clients>,
    analyses: Arc<Semaphore>,
    /// Heavy requests' slots: half of `max_concurrent`, at least one.
    heavy_analyses: Arc<Semaphore>,
    budget: Arc<Budget>,
    /// `max_buffered_bytes` in KiB, one permit each.
    buffered_kib: Arc<Semaphore>,
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
    let buffered_kib =
        (settings.max_buffered_bytes.max(settings.max_upload_bytes) >> 10).clamp(1, Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        registry,
        clients: Clients::new(settings.max_connections_per_client, settings.rate_per_minute),
        analyses: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
        heavy_analyses: Arc::new(Semaphore::new((settings.max_concurrent / 2).max(1))),
        budget: Arc::new(Budget::new(settings.daily_images, settings.daily_sets_per_image)),
        buffered_kib: Arc::new(Semaphore::new(buffered_kib)),
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
        // Closed at once: past the cap in all, or past the client's own.
        let Some(held) = shared.clients.connect(Client::of(peer.ip())) else { continue };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else { continue };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permits = (permit, held);
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
        (&Method::GET, "/api/key") => reply(StatusCode::OK, &signing_key(&shared.settings)),
        (&Method::POST, "/api/analyze") => analyze(request, Client::of(peer.ip()), shared).await,
        (_, "/" | "/console.js" | "/console.css" | "/api/models" | "/api/key" | "/api/analyze") => {
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
                   "max_side": s.limits.max_side, "rate_per_minute": s.rate_per_minute,
                   "min_set": s.min_set, "daily_images": s.daily_images,
                   "daily_sets_per_image": s.daily_sets_per_image},
        "disclosure": s.disclosure.name(),
        "mint_version": mint_audit::VERSION,
        "signer": signing_key(s),
    })
}

/// The key this console signs bundles with, to pin when verifying them.
fn signing_key(settings: &Settings) -> Value {
    let public = settings.signing_key.public();
    json!({"algorithm": "ed25519", "fingerprint": public.fingerprint(), "public_key_pem": public.to_pem(),
           "ephemeral": settings.ephemeral_key})
}

async fn analyze(request: Request<Incoming>, client: Client, shared: &Shared) -> Response<Full<Bytes>> {
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
    if let Some(wait) = shared.clients.rate_limited(client) {
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
    let Some(declared) = declared else {
        return problem(StatusCode::LENGTH_REQUIRED, "The upload must say its length (Content-Length).");
    };
    if declared > max as u64 {
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
    // One analysis per client at a time, from its first byte to its last computation.
    let Some(held) = shared.clients.analysis(client) else {
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Your address has an analysis under way; wait for it to finish, then send the next.",
        );
    };
    // The memory the upload will take, checked against every upload held at once.
    let kib = (declared.div_ceil(1024).max(1)).min(u64::from(u32::MAX)) as u32;
    let Ok(buffered) = Arc::clone(&shared.buffered_kib).try_acquire_many_owned(kib) else {
        return busy();
    };
    // The whole body before any analysis slot: a slow or silent upload holds only its own.
    let body = match read_body(request.into_body(), declared as usize).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Interrupted) => {
            return problem(StatusCode::BAD_REQUEST, "The upload was interrupted; try again.")
        }
        Err(BodyError::TooSlow) => {
            return problem(
                StatusCode::REQUEST_TIMEOUT,
                "The upload arrived too slowly; try again on a faster connection.",
            )
        }
    };
    let uploads = match read_form(body, boundary, &shared.settings.limits).await {
        Ok(u) => u,
        Err(message) => return problem(StatusCode::BAD_REQUEST, &message),
    };
    // Slots are handed out in arrival order; each client waits with at most one request. A
    // heavy request (much decoding) takes a slot of its own lane, so that light requests keep
    // every slot of theirs beside any number of heavy ones.
    let heavy = uploads::declared_pixels(&uploads) > HEAVY_PIXELS;
    let lane = if heavy { &shared.heavy_analyses } else { &shared.analyses };
    let Ok(Ok(permit)) = tokio::time::timeout(QUEUE_WAIT, Arc::clone(lane).acquire_owned()).await else {
        return busy();
    };
    let limits = shared.settings.limits;
    let key = Arc::clone(&shared.settings.signing_key);
    let (disclosure, min_set) = (shared.settings.disclosure, shared.settings.min_set);
    let budget = Arc::clone(&shared.budget);
    let model_id = entry.id.clone();
    let started = Instant::now();
    let outcome = run_work(heavy, move || {
        // Held by the work itself, so that a client that hangs up does not free its slot early.
        let _held = (permit, held);
        let decoded = uploads::decode(&uploads, model.input_shape, &limits).map_err(Rejection::Input)?;
        drop((uploads, buffered));
        let n = decoded.samples.len();
        if n < min_set {
            return Err(Rejection::Input(format!(
                "This console answers on sets of at least {min_set} images, and {} {} sent. One image says little about \
                 training, and a console that answered on single images would tell anyone whether a stranger's photo \
                 was used.",
                n,
                if n == 1 { "was" } else { "were" }
            )));
        }
        let keys: Vec<_> = (0..n).map(|i| budget::image_key(&model_id, decoded.images.sample(i))).collect();
        budget.spend(client, &keys).map_err(Rejection::Budget)?;
        let evidence =
            analysis::analyze(&model, &decoded, disclosure).map_err(|e| Rejection::Internal(format!("{e:#}")))?;
        let signed = bundle::Bundle::issue(evidence, SystemTime::now(), &key)
            .map_err(|e| Rejection::Internal(format!("signing: {e:#}")))?;
        Ok::<_, Rejection>((decoded.samples.len(), signed))
    })
    .await;
    match outcome {
        Ok(Ok((n, bundle))) => {
            // Counts only: never a file name, a hash or an address.
            eprintln!("mint serve: analysed {n} images for {} in {:.2} s", entry.id, started.elapsed().as_secs_f64());
            reply(StatusCode::OK, &serde_json::to_value(&bundle).expect("an envelope is JSON"))
        }
        Ok(Err(Rejection::Input(message))) => problem(StatusCode::UNPROCESSABLE_ENTITY, &message),
        Ok(Err(Rejection::Budget(refusal))) => {
            let mut r = problem(StatusCode::TOO_MANY_REQUESTS, &refusal.message());
            if let Ok(v) = HeaderValue::from_str(&refusal.renews_in().as_secs().max(1).to_string()) {
                r.headers_mut().insert("Retry-After", v);
            }
            r
        }
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

/// Requests asking to decode more than this many pixels are heavy: they wait in a lane of their
/// own and run at the lowest CPU priority, so that on a machine with few cores a client sending
/// heavy requests within the limits slows the others' light ones as little as possible.
const HEAVY_PIXELS: u64 = 1 << 20;

/// Runs `work` off the async threads: on tokio's blocking pool, or, when `heavy`, on a thread
/// of its own at the lowest priority (a thread of its own, because a thread cannot raise its
/// priority back without privileges, and the pool's threads are reused).
async fn run_work<T: Send + 'static>(heavy: bool, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ()> {
    if !heavy {
        return tokio::task::spawn_blocking(work).await.map_err(|_| ());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("mint-serve-heavy".into()).spawn(move || {
        lowest_priority();
        let _ = tx.send(work());
    });
    match spawned {
        Ok(_) => rx.await.map_err(|_| ()),
        Err(_) => Err(()),
    }
}

/// Puts the calling thread at nice 19 (Linux keeps a nice value per thread); elsewhere, or if
/// refused, it stays as it is.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority and gettid take plain integers and touch no memory of ours; on
        // Linux, PRIO_PROCESS with a thread id sets that thread's nice value.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    }
}

enum Rejection {
    Input(String),
    Budget(Refusal),
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

enum BodyError {
    TooLarge,
    Interrupted,
    TooSlow,
}

/// A request body of `declared` bytes (checked against the upload limit), read while it keeps
/// arriving: its next bytes are due by `BODY_GRACE` plus one second per
/// `MIN_BODY_BYTES_PER_SECOND` received so far, whatever the client does.
async fn read_body(mut body: Incoming, declared: usize) -> Result<Bytes, BodyError> {
    let started = tokio::time::Instant::now();
    let mut received = Vec::with_capacity(declared);
    loop {
        let due =
            started + BODY_GRACE + Duration::from_secs_f64(received.len() as f64 / MIN_BODY_BYTES_PER_SECOND as f64);
        let frame = match tokio::time::timeout_at(due, body.frame()).await {
            Err(_) => return Err(BodyError::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Interrupted),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if received.len() + data.len() > declared {
                return Err(BodyError::TooLarge);
            }
            received.extend_from_slice(&data);
        }
    }
    if received.len() < declared {
        return Err(BodyError::Interrupted);
    }
    Ok(Bytes::from(received))
}

fn busy() -> Response<Full<Bytes>> {
    problem(StatusCode::SERVICE_UNAVAILABLE, "The console is busy with other requests; try again in a moment.")
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
