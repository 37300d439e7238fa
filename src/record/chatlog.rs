//! The chat log task: messages accepted on a channel while a recording is made are kept with
//! their media time (`recording_chat`), and so are the changes of its pinned question
//! (`recording_pins`, see [`super::pins`]). Batched: everything queued is written in one
//! transaction (one fsync), so a busy chat costs the database thread little.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::db::recording_pins::{self, PinRow};
use crate::db::recordings::{self, ChatRow};
use crate::db::Db;

/// Most items written per transaction.
const BATCH: usize = 256;

/// What the recorder asks of the log.
#[derive(Debug)]
pub enum Item {
    Add {
        channel: String,
        recording: String,
        row: ChatRow,
    },
    /// A moderator deleted a message: gone from the logs too.
    Delete { channel: String, message_id: i64 },
    /// The pinned question changed while the recording was made.
    Pin {
        channel: String,
        recording: String,
        row: PinRow,
    },
}

pub async fn run(db: Db, mut rx: mpsc::Receiver<Item>, cancel: CancellationToken) {
    loop {
        let first = tokio::select! {
            i = rx.recv() => i,
            _ = cancel.cancelled() => {
                // Whatever was already queued is still written.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let res = db
            .write(move |tx| {
                for item in &batch {
                    match item {
                        Item::Add {
                            channel,
                            recording,
                            row,
                        } => recordings::add_chat(tx, channel, recording, row)?,
                        Item::Delete {
                            channel,
                            message_id,
                        } => recordings::delete_chat(tx, channel, *message_id)?,
                        Item::Pin {
                            channel,
                            recording,
                            row,
                        } => recording_pins::add(tx, channel, recording, row)?,
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            error!(error = %e, items = n, "chat log not saved");
        }
    }
}
