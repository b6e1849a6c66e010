//! `manage.mail_queue`: notifications waiting for `send_queued_mail`, and the
//! lock that keeps two senders from sending one mail twice.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

/// The session advisory lock held by whoever is delivering the mail queue, so
/// that two senders never send one mail twice.
pub const MAIL_SENDER_LOCK: i64 = 0x6d61_6e61_6765_0002;

/// Take the mail sender lock, or learn that another sender holds it.
pub fn try_lock_mail_sender(client: &mut impl GenericClient) -> Result<bool, postgres::Error> {
    client
        .query_typed_one(
            "SELECT pg_try_advisory_lock($1) AS locked",
            typed![&MAIL_SENDER_LOCK],
        )?
        .try_get("locked")
}

pub fn unlock_mail_sender(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.execute_typed("SELECT pg_advisory_unlock($1)", typed![&MAIL_SENDER_LOCK])?;
    Ok(())
}

pub fn mail_queue_len(client: &mut impl GenericClient) -> Result<i64, postgres::Error> {
    client
        .query_typed_one("SELECT count(*) AS queued FROM manage.mail_queue", &[])?
        .try_get("queued")
}

/// Put a mail in the queue.
pub fn queue_mail(
    client: &mut impl GenericClient,
    recipient: &str,
    sender: &str,
    mail: &crate::mail::Mail,
    run_id: Option<i64>,
) -> Result<(), postgres::Error> {
    let headers: serde_json::Map<String, serde_json::Value> = mail
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
        .collect();
    let headers = serde_json::Value::Object(headers);
    client.execute_typed(
        "INSERT INTO manage.mail_queue (recipient, sender, subject, body, headers, run_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        typed![
            &recipient,
            &sender,
            &mail.subject,
            &mail.body,
            &headers,
            &run_id,
        ],
    )?;
    Ok(())
}

/// Put a webhook alert in the queue (§20): recipient `webhook:NAME`, the
/// mail's subject, the JSON payload as the body, and no sender or headers.
/// Its URL and secret stay in the configuration.
pub fn queue_webhook(
    client: &mut impl GenericClient,
    recipient: &str,
    subject: &str,
    payload: &str,
    run_id: Option<i64>,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "INSERT INTO manage.mail_queue (recipient, sender, subject, body, run_id) \
         VALUES ($1, '', $2, $3, $4)",
        typed![&recipient, &subject, &payload, &run_id],
    )?;
    Ok(())
}

/// A mail waiting in `manage.mail_queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMail {
    pub id: i64,
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    pub body: String,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
    pub queued_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

impl QueuedMail {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        let headers = match row.try_get::<_, serde_json::Value>("headers")? {
            serde_json::Value::Object(map) => map
                .into_iter()
                .map(|(name, value)| {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (name, value)
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(QueuedMail {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            sender: row.try_get("sender")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            headers,
            queued_at: row.try_get("queued_at")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
        })
    }
}

/// Every queued mail, oldest first.
pub fn queued_mails(client: &mut impl GenericClient) -> Result<Vec<QueuedMail>, postgres::Error> {
    client
        .query_typed(
            "SELECT id, recipient, sender, subject, body, headers, queued_at, attempts, \
                    last_error, last_attempt_at \
             FROM manage.mail_queue ORDER BY queued_at, id",
            &[],
        )?
        .iter()
        .map(QueuedMail::from_row)
        .collect()
}

/// The server accepted the mail: forget it.
pub fn mail_sent(client: &mut impl GenericClient, id: i64) -> Result<(), postgres::Error> {
    client.execute_typed("DELETE FROM manage.mail_queue WHERE id = $1", typed![&id])?;
    Ok(())
}

/// An attempt to send these mails failed: count it and keep the error.
pub fn mail_failed(
    client: &mut impl GenericClient,
    ids: &[i64],
    error: &str,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.mail_queue SET attempts = attempts + 1, last_error = $2, \
             last_attempt_at = clock_timestamp() \
         WHERE id = ANY($1)",
        typed![&ids, &error],
    )?;
    Ok(())
}
