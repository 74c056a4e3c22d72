//! Lines from a text hooker's WebSocket (`[intake] websocket`, e.g. Textractor's WebSocket
//! extension on ws://127.0.0.1:6677): yaku is the client, each text message is one line. The
//! connection is made again with a capped backoff whenever the server is away; a message
//! longer than the clipboard's size limit is refused by the WebSocket reader itself, before
//! it is read into memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::core::intake::ClipEvent;

/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Takes lines from `url` until `tx` closes. Lines that come while `paused` is set are
/// dropped: pause means nothing is read. Texts over `max_bytes` are refused unread.
pub async fn run(
    url: String,
    max_bytes: usize,
    paused: Arc<AtomicBool>,
    tx: mpsc::Sender<ClipEvent>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_bytes))
        .max_frame_size(Some(max_bytes));
    let mut backoff = FIRST_BACKOFF;
    // One warning per outage, not one per attempt.
    let mut warned = false;
    loop {
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false).await
        {
            Ok((mut stream, _)) => {
                if warned {
                    tracing::info!(url = %url, "connected to the WebSocket again");
                } else {
                    tracing::info!(url = %url, "connected to the WebSocket");
                }
                warned = false;
                backoff = FIRST_BACKOFF;
                while let Some(message) = stream.next().await {
                    match message {
                        Ok(Message::Text(text)) => {
                            if paused.load(Ordering::Relaxed) {
                                continue;
                            }
                            let event = ClipEvent::Pushed {
                                text: text.as_str().to_owned(),
                            };
                            if tx.send(event).await.is_err() {
                                return; // the daemon is gone
                            }
                        }
                        Ok(Message::Binary(data)) => {
                            tracing::debug!(bytes = data.len(), "binary WebSocket message ignored");
                        }
                        Ok(_) => {} // ping, pong, close: tungstenite answers them
                        Err(e) => {
                            // Never the message's text: a refused one may be anything.
                            tracing::warn!(url = %url, error = %e, "the WebSocket failed; connecting again");
                            break;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(url = %url, error = %e, "cannot connect to the WebSocket; trying again until it is there");
                    warned = true;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
}
