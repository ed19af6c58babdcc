//! The HTTP endpoint (`[http]` in the config file), on 127.0.0.1:8080 unless `listen` says
//! otherwise:
//!
//! - `/` a page with the live preview and the newest result;
//! - `/healthz` the model loaded, the camera streaming, the newest result's age, as JSON:
//!   200 when healthy, 503 when not;
//! - `/metrics` the Prometheus text ([`super::metrics`]);
//! - `/result.json` the newest result, as `pinsight run` prints it;
//! - `/snapshot.jpg` the newest classified frame with its label drawn on it;
//! - `/stream.mjpeg` the same, as an MJPEG stream of at most `stream_fps` frames a second, to at
//!   most [`MAX_STREAMS`] clients at once.
//!
//! With a `token`, every request needs it, as `Authorization: Bearer <token>` or, for a
//! browser, `?token=<token>`; others get 401.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::FONT_10X20;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use serde::Serialize;
use tokio::sync::watch;

use super::metrics::Gauges;
use super::{Hub, Shown};
use crate::canvas::Canvas;
use crate::{Error, Result};

/// The address served when the config file does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Preview frames a second when the config file does not say.
pub const DEFAULT_STREAM_FPS: f64 = 5.0;
/// `stream_fps`: 0.1 to 30.
pub const STREAM_FPS: (f64, f64) = (0.1, 30.0);
/// Preview streams served at once; more are refused with 503.
pub const MAX_STREAMS: u64 = 4;
/// The preview's JPEG quality.
const JPEG_QUALITY: u8 = 80;

/// What `[http]` says.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Shown as `"(set)"` by `pinsight config`.
    #[serde(serialize_with = "super::secret")]
    pub token: Option<String>,
    pub stream_fps: f64,
}

/// `[http]` as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    token: Option<String>,
    stream_fps: Option<f64>,
}

impl HttpSettings {
    /// `[http]` of a config file, checked; an error names the key.
    pub fn from_toml(value: toml::Value) -> std::result::Result<Self, String> {
        let raw: RawHttp = value
            .try_into()
            .map_err(|e: toml::de::Error| format!("[http]: {}", e.message()))?;
        let key = |key: &str, reason: String| format!("[http] {key}: {reason}");
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().map_err(|_| {
            key(
                "listen",
                format!("{listen:?} is not an address and port like 127.0.0.1:8080 or [::1]:8080"),
            )
        })?;
        if raw
            .token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.contains(char::is_whitespace))
        {
            return Err(key("token", "must be non-empty, without spaces".into()));
        }
        let stream_fps = raw
            .stream_fps
            .map(|fps| crate::config::within(fps, STREAM_FPS))
            .transpose()
            .map_err(|r| key("stream_fps", r))?
            .unwrap_or(DEFAULT_STREAM_FPS);
        Ok(HttpSettings {
            listen,
            token: raw.token,
            stream_fps,
        })
    }
}

/// The bound endpoint, served by [`Server::serve`] on the network thread.
pub struct Server {
    listener: std::net::TcpListener,
    router: Router,
    stopped: watch::Receiver<bool>,
}

struct App {
    hub: Arc<Hub>,
    token: Option<String>,
    /// The least time between two preview frames to one client.
    period: Duration,
    stopped: watch::Receiver<bool>,
    /// The newest frame as JPEG, by result number: encoded once, whatever the viewers.
    jpeg: tokio::sync::Mutex<Option<(u64, Bytes)>>,
    with_mqtt: bool,
}

impl Server {
    /// Binds `settings.listen` now, so that a taken port is an error before the model loads.
    pub fn bind(
        settings: &HttpSettings,
        hub: Arc<Hub>,
        stopped: watch::Receiver<bool>,
        with_mqtt: bool,
    ) -> Result<Server> {
        let failed = |e: std::io::Error| Error::Network {
            what: format!("[http] listen = \"{}\"", settings.listen),
            reason: e.to_string(),
        };
        let listener = std::net::TcpListener::bind(settings.listen).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let address = listener.local_addr().map_err(failed)?;
        log::info!("http: serving on http://{address}/");
        let app = Arc::new(App {
            hub,
            token: settings.token.clone(),
            period: Duration::from_secs_f64(1.0 / settings.stream_fps),
            stopped: stopped.clone(),
            jpeg: tokio::sync::Mutex::new(None),
            with_mqtt,
        });
        let router = Router::new()
            .route("/", get(page))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/result.json", get(result))
            .route("/snapshot.jpg", get(snapshot))
            .route("/stream.mjpeg", get(stream))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .layer(middleware::from_fn_with_state(app.clone(), authorise))
            .with_state(app);
        Ok(Server {
            listener,
            router,
            stopped,
        })
    }

    /// Serves until the run stops.
    pub async fn serve(self) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(e) => {
                log::error!("http: cannot serve: {e}");
                return;
            }
        };
        let mut stopped = self.stopped;
        let served = axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            log::error!("http: {e}");
        }
    }
}

/// Refuses a request without the token, when there is one.
async fn authorise(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = bearer(request.headers()).or_else(|| {
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .find(|(key, _)| key == "token")
                .map(|(_, value)| value.into_owned())
        });
        if !given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "this endpoint needs its token: `Authorization: Bearer <token>` or `?token=<token>`\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.trim().to_owned())
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let health = app.hub.health(Instant::now());
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, serde_json::to_string(&health).unwrap_or_default())
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let health = app.hub.health(Instant::now());
    let gauges = Gauges {
        model_loaded: health.model_loaded,
        camera_streaming: health.camera_streaming,
        last_result_age: health.last_result_age_seconds,
    };
    let text = app.hub.metrics.render(&gauges, app.with_mqtt);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn result(State(app): State<Arc<App>>) -> Response {
    match app.hub.result_json() {
        Some(line) => json(StatusCode::OK, line.to_string()),
        None => no_result_yet(),
    }
}

async fn snapshot(State(app): State<Arc<App>>) -> Response {
    match app.jpeg().await {
        Some((_, jpeg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        None => no_result_yet(),
    }
}

fn no_result_yet() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "no result yet\n").into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The boundary between the parts of `/stream.mjpeg`.
const BOUNDARY: &str = "pinsight-frame";

async fn stream(State(app): State<Arc<App>>) -> Response {
    let clients = &app.hub.metrics.stream_clients;
    if clients.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        clients.fetch_sub(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} previews are streaming already\n"),
        )
            .into_response();
    }
    let mut results = app.hub.subscribe();
    // The newest frame goes out at once.
    results.mark_changed();
    let viewer = Viewer {
        stopped: app.stopped.clone(),
        app,
        results,
        sent: None,
    };
    let parts = futures_util::stream::unfold(viewer, |mut viewer| async move {
        let part = viewer.next_part().await?;
        Some((Ok::<_, std::convert::Infallible>(part), viewer))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}

/// One client of the preview stream.
struct Viewer {
    app: Arc<App>,
    results: watch::Receiver<u64>,
    stopped: watch::Receiver<bool>,
    /// The result number and time of the frame sent last.
    sent: Option<(u64, tokio::time::Instant)>,
}

impl Viewer {
    /// The next part: a frame newer than the last sent, no sooner than the period after it.
    /// None when the run stops.
    async fn next_part(&mut self) -> Option<Bytes> {
        loop {
            if let Some((_, at)) = self.sent {
                tokio::select! {
                    () = tokio::time::sleep_until(at + self.app.period) => {}
                    _ = self.stopped.wait_for(|stop| *stop) => return None,
                }
            }
            tokio::select! {
                changed = self.results.changed() => changed.ok()?,
                _ = self.stopped.wait_for(|stop| *stop) => return None,
            }
            let Some((number, jpeg)) = self.app.jpeg().await else {
                continue;
            };
            if self.sent.is_some_and(|(sent, _)| sent == number) {
                continue;
            }
            self.sent = Some((number, tokio::time::Instant::now()));
            let head = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            );
            let mut part = Vec::with_capacity(head.len() + jpeg.len() + 2);
            part.extend_from_slice(head.as_bytes());
            part.extend_from_slice(&jpeg);
            part.extend_from_slice(b"\r\n");
            return Some(part.into());
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.app
            .hub
            .metrics
            .stream_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl App {
    /// The newest frame with its caption, as JPEG, with its result number; encoded on the
    /// blocking pool the first time it is asked for.
    async fn jpeg(&self) -> Option<(u64, Bytes)> {
        let shown = self.hub.shown()?;
        let mut cached = self.jpeg.lock().await;
        if let Some((number, jpeg)) = &*cached
            && *number == shown.result
        {
            return Some((*number, jpeg.clone()));
        }
        let number = shown.result;
        let encoded = tokio::task::spawn_blocking(move || encode(&shown)).await;
        match encoded {
            Ok(Ok(jpeg)) => {
                let jpeg = Bytes::from(jpeg);
                *cached = Some((number, jpeg.clone()));
                Some((number, jpeg))
            }
            Ok(Err(e)) => {
                log::warn!("http: cannot encode the preview: {e}");
                None
            }
            Err(e) => {
                log::warn!("http: the preview encoder failed: {e}");
                None
            }
        }
    }
}

/// `shown`'s frame with its caption on a dark band at the top, as JPEG.
pub fn encode(shown: &Shown) -> image::ImageResult<Vec<u8>> {
    let mut canvas = Canvas(shown.image.clone());
    let band = Rectangle::new(Point::zero(), Size::new(canvas.0.width(), 26));
    let _ = band
        .into_styled(PrimitiveStyle::with_fill(Rgb888::BLACK))
        .draw(&mut canvas);
    let style = MonoTextStyle::new(&FONT_10X20, Rgb888::WHITE);
    let _ = Text::with_baseline(&shown.caption, Point::new(4, 3), style, Baseline::Top)
        .draw(&mut canvas);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&canvas.0)?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn the_preview_is_a_jpeg_with_the_caption_drawn() {
        let shown = Shown {
            result: 1,
            image: image::RgbImage::from_pixel(64, 48, image::Rgb([200, 200, 200])),
            caption: "cup 91%".into(),
        };
        let jpeg = encode(&shown).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (64, 48));
        // The band is dark, the rest as it was.
        assert!(decoded.get_pixel(60, 1).0[0] < 60);
        assert!(decoded.get_pixel(32, 40).0[0] > 150);
    }
}
