//! PostgreSQL's `NOTIFY` announcements, fanned out to this process: one listening
//! connection per [`Hub`], whatever the number of channels and listeners, so news
//! written by any replica (a new event, a gateway turn freed) reaches all.

use std::time::Duration;

use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;

/// One announcement. An empty `channel` says announcements were lost (the listening
/// connection dropped): listeners must look for themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub channel: String,
    pub payload: String,
}

impl Announcement {
    /// Whether a listener for `payload` on `channel` must look again.
    pub fn concerns(&self, channel: &str, payload: &str) -> bool {
        self.channel.is_empty() || (self.channel == channel && self.payload == payload)
    }
}

/// Waits until `news` brings an announcement of `payload` on `channel`, or says
/// announcements were lost, or `until` passes: whichever comes first.
pub async fn wait_for(
    news: &mut broadcast::Receiver<Announcement>,
    channel: &str,
    payload: &str,
    until: tokio::time::Instant,
) {
    loop {
        tokio::select! {
            news = news.recv() => match news {
                Ok(news) if news.concerns(channel, payload) => return,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(until).await;
                    return;
                }
            },
            () = tokio::time::sleep_until(until) => return,
        }
    }
}

/// Fans the announcements of its channels out to the listeners of this process.
#[derive(Debug, Clone)]
pub struct Hub {
    channels: &'static [&'static str],
    sender: broadcast::Sender<Announcement>,
}

impl Hub {
    pub fn new(channels: &'static [&'static str]) -> Self {
        Self {
            channels,
            sender: broadcast::channel(1024).0,
        }
    }

    /// Announcements from now on; lagging behind counts as a loss.
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.sender.subscribe()
    }

    /// Follows the channels until aborted, reconnecting when the connection drops.
    pub async fn listen(self, database_url: SecretString) {
        loop {
            if let Err(error) = self.listen_once(&database_url).await {
                tracing::warn!(%error, "database announcements lost; listeners poll until they return");
            }
            // Whatever was announced meanwhile is picked up by the listeners' polls.
            let _ = self.sender.send(Announcement {
                channel: String::new(),
                payload: String::new(),
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn listen_once(&self, database_url: &SecretString) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) =
            tokio_postgres::connect(database_url.expose_secret(), tokio_postgres::NoTls).await?;
        let (forward, mut announced) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        let announcement = Announcement {
                            channel: note.channel().to_owned(),
                            payload: note.payload().to_owned(),
                        };
                        if forward.send(announcement).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        });
        let listen: String = self
            .channels
            .iter()
            .map(|channel| format!("LISTEN {channel};"))
            .collect();
        client.batch_execute(&listen).await?;
        while let Some(announcement) = announced.recv().await {
            // No receivers is fine: nobody listens.
            let _ = self.sender.send(announcement);
        }
        drop(client);
        match driver.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}
